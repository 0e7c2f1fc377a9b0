"""The studio's tabs, one module each: ``swap`` (with ``swap_video``), ``people`` (People & consent,
with the sub-tabs ``enrol``, ``consent`` and ``erase``), ``verify`` and ``audit``.

Each module builds its tab and wires its own events (each API endpoint is an event's
``api_name``); ``likeness.webapp.ui`` lays out the page frame and wires what spans tabs. Shared
pieces: ``handling`` (users, errors as results, tables) and ``uploads`` (upload fields that leave
every check of the file to likeness). Imported only when the app starts (they import Gradio).
"""
