"""The chat page: plain HTML, CSS and JavaScript served by the app itself (`page.py`)."""
