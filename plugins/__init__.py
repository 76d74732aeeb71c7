"""The built-in variant plugins; each registers through the `cmnist_zoo` entry-point group like any third party's."""
