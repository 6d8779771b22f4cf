"""The web dashboard at ``/ui``: server-rendered pages (Jinja2, htmx), live through
Server-Sent Events, calling the service layer like every front door."""
