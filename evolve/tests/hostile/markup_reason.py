"""Hostile: fails with an error message that is rich markup, which the live display renders as markup.

The reason of a failed candidate (its exception text) is put into rich markup strings by the evolve
live display and the result table; an unmatched closing tag makes rich raise MarkupError in the
controller (a traceback that ends the run, and every later ``evolve run/resume`` summary).
"""
raise ValueError("[/] [/bold] closing tags that match nothing")
