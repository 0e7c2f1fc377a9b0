"""The likeness studio: a Gradio app over ``likeness.jobs`` and the consent registry.

Importing this package does not import Gradio; ``likeness.webapp.server`` does, when the app starts.
``studio`` holds what the app does (with the role checks), ``ui`` the page frame and ``tabs`` one
module per tab (how it looks and which events it wires).
"""
