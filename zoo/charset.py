"""The 15 Chinese numerals of the data set: code (1..15), character and the number it stands for."""

CHARACTERS = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "百", "千", "万", "亿")
VALUES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 1000, 10000, 100000000)
CODES = tuple(range(1, 16))
NUM_CLASSES = len(CODES)


def parse_label(text: str) -> int:
    """Turn a character (七) or a code (8) into a code 1..15, or raise ValueError saying what is accepted."""
    text = str(text).strip()
    if text in CHARACTERS:
        return CHARACTERS.index(text) + 1
    if text.isdigit() and int(text) in CODES:
        return int(text)
    raise ValueError(f"unknown label {text!r}; use one of {' '.join(CHARACTERS)} or a code 1..15")
