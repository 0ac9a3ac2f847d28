"""The bottom layer: the error family, the Problem type, the Progress protocol, the formula-injection
neutraliser and where the templates are. It imports nothing else of xl_ecom."""
