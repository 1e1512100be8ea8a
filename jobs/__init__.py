"""Jobs an API process starts in a process of their own, off the serving path."""
