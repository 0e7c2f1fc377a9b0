"""The help paragraphs shown at the top of each tab and sub-tab (Markdown). Plain text; no Gradio here."""

HELP = {
    "swap": (
        "Put an enrolled person's likeness onto a face in a target image or video. Every face replaced must "
        "match an enrolled person whose consent covers this purpose, role (*source* for the likeness used, "
        "*target* for the face replaced) and medium; otherwise the job is refused and nothing is written. "
        "Each output carries a visible **AI-GENERATED** label, an invisible watermark with its output id, "
        "signed C2PA content credentials and an audit-ledger entry."
    ),
    "video": (
        "Faces are followed through the footage. **Consented only** replaces the faces identified as "
        "enrolled people with a consent to be replaced (role *target*, medium *video*) and leaves everyone "
        "else untouched (the report says why); **All** replaces every face or refuses the job. Audio is "
        "copied untouched. H.264 plays in the browser; FFV1 is lossless, for VFX (download it)."
    ),
    "people": (
        "Who is enrolled, what they consented to, and what was made under each consent. Administrators enrol "
        "people from reference photos, record consent with the full record, revoke it, or erase a person."
    ),
    "enrol": (
        "Upload one or more photos that each show **only this person**, sharp and roughly frontal. The check "
        "below runs as soon as photos are added: every photo needs exactly one face at least 80 px tall."
    ),
    "grant": (
        "Record a consent as the signed document states it: a **specific description of the uses**, the "
        "purposes, the roles, the media, a bounded period, who grants it (the person, a guardian, an "
        "estate, a union, or expired post-mortem rights), compensation, representation and a takedown "
        "contact. The "
        "consent policy checks the record before it is stored; the ledger keeps its hash."
    ),
    "revoke": "Revoking takes effect at once: new jobs, and jobs already past the gate, are refused.",
    "erase": (
        "Erasure deletes the person's reference faces and embeddings and revokes all their consents. The "
        "identity remains as a tombstone and the ledger keeps its entries (no images). It cannot be undone."
    ),
    "generate": (
        "**Generate** a new image with a local diffusers model (a folder on this server, or a name "
        "from `likeness models list`; nothing is ever downloaded). With *Nobody*, the people in it "
        "are synthetic: every face in the output is checked against the registry, and an enrolled "
        "person without a consent to new images of them stops the job. A person's likeness needs "
        "their consent with the role *generate* (a swap consent is not enough), an ArcFace "
        "reference and the IP-Adapter FaceID weights. Every output is labelled, watermarked, "
        "signed and recorded."
    ),
    "verify": (
        "Drop any image or video to see whether it is a disclosed likeness output: its C2PA content "
        "credentials (and whether they still hold), its invisible watermark, the visible label and this "
        "installation's ledger record. A video is read in time windows."
    ),
    "audit": (
        "Every enrolment, consent, revocation, refusal and output is an entry in a hash-chained, signed "
        "ledger. Check the chain, browse the entries, or export them as JSON Lines."
    ),
    "models": (
        "The model files this installation runs (`likeness models list`): whether each is present, its "
        "hash check, its licence and whether it may be used for commercial purposes. A job for a purpose "
        "that is not non-commercial is refused while it would use a non-commercial model without a "
        "recorded licence."
    ),
}
