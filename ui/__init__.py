"""The browser chat: a thin Gradio layer over :func:`qa.ask`."""
