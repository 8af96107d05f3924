"""The browser chat: a thin Gradio layer over :func:`qa.ask`.

Run it with ``python -m ui``; build it in code with :func:`ui.app.build_app`.
"""

#: Loopback only by default: the app is reachable from other machines only when asked.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
