"""Log formats: the escaped text lines and one JSON object a line, with the running attempt's
fields."""

__all__: list[str] = []
