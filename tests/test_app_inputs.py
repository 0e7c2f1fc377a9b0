"""Bad uploads to the studio, without a server: the fast-tier counterpart of test_app_api.py (slow tier).

The Studio object the app's API calls and the mapping of its errors to the API's JSON (``views``; the
Gradio layer in ``ui`` only passes them on, and importing it costs seconds): an unusable or oversized
file is a clear ``bad_input`` with exit code 4, and nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from likeness.errors import BadInput
from likeness.home import Home
from likeness.users import UserStore


@pytest.fixture()
def studio(home: Home):
    from likeness.webapp.studio import Studio, UploadLimits

    return Studio(home, UserStore.for_home(home), auth_required=False, limits=UploadLimits(image_mb=1))


def test_bad_uploads_are_refused_as_bad_input_in_the_api_json(studio, tmp_path: Path) -> None:
    from likeness.webapp import views

    user = studio.user(None)  # no app users: the local user is an admin
    fake = tmp_path / "portrait.jpg"
    fake.write_text("this is not a JPEG")
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(int(1.5 * 1024 * 1024)))
    before = sorted(studio.home.root.rglob("*"))

    with pytest.raises(BadInput) as caught:  # over the upload limit: refused before it is read
        studio.verify(user, big)
    says = "this studio accepts images and documents up to 1 MB"
    assert caught.value.exit_code == 4 and says in caught.value.reason
    result = views.error_json(caught.value)
    assert result["status"] == "error" and result["error"] == "bad_input" and result["exit_code"] == 4
    assert says in result["reason"]
    assert sorted(studio.home.root.rglob("*")) == before, "nothing written"
    # verify never refuses a file it can partly read: it says what could not be read, by file name
    report = views.verify_json(studio.verify(user, fake))
    assert report["status"] == "none" and report["unreadable"].startswith("portrait.jpg: ")
    assert str(tmp_path) not in str(report)
