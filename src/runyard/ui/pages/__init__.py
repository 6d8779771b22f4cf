"""The dashboard's pages: each module gives ``router = APIRouter()`` with its paths under
``/ui`` (``/runs``, ``/workflows`` ...); :func:`runyard.ui.app.mount_ui` includes every
module found here."""
