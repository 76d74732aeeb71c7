"""One error type that the CLI turns into a single clear line and a non-zero exit."""


class ZooError(Exception):
    """A problem the user can fix: the message says what was wrong, where, and what to do."""


class NoPriorError(Exception):
    """Raised by models that have no generative prior to sample from (see Autoencoder.sample_codes)."""
