"""Reports of a fit: the tables as DataFrames (``_tables``) and ``summary()`` (``_display``)."""
