"""The web service (``pinid serve``): a page and a JSON API over a saved model.

Kept light: ``pinid --help`` imports the settings without loading FastAPI or the CNN.
"""
