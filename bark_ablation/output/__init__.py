"""What the study and the release series both write: staged output directories and tables for
Markdown and HTML pages. Below both wings; imports only ``core``."""
