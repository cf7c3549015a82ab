"""The web dashboard served at ``/dashboard`` (templates, static assets, page routes)."""
