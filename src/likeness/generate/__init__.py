"""Generation backends: a local diffusers pipeline (text-to-image or inpainting), an optional IP-Adapter
FaceID conditioning on a consented identity, prompt checks and face masks. The road
(:mod:`likeness.jobs.generation`) gates and seals what they make; nothing here writes media.

torch and diffusers are imported inside the functions that need them.
"""
