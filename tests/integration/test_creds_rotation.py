# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A registry password rotated while an image stays mounted for hours: the user updates
auth.json, the password file, or the credential helper answers with a new secret (ECR's last
12 hours, gcloud's one). Once the daemon's token expires and the token server refuses the old
password, the daemon looks the credentials up again (at most every 10 s) and reads go on.
It read them once at its start: every cold read failed with EIO until the last mount went."""

import base64
import json
import os
import shutil
import time

import pytest

from common import child_read
from lazymount import push_big_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20


@pytest.fixture(scope="module")
def image(tmp_path_factory, token_registry):
    return push_big_image(str(tmp_path_factory.mktemp("rotation")), token_registry.client,
                          "private/rotated")


def write_password(lazy, reg, how, user, pw):
    """The password where `how` keeps it: auth.json, a password file (the helper's source
    too), or a secret volume as Kubernetes mounts one."""
    if how == "auth.json":
        with open(os.path.join(lazy.root, "auth.json"), "w") as f:
            json.dump({"auths": {reg.host: {
                "auth": base64.b64encode(f"{user}:{pw}".encode()).decode()}}}, f)
    elif how == "secret-volume":
        # password -> ..data/password, ..data -> a directory of this version, swapped at
        # once when it rotates, the old one removed
        vdir = os.path.join(lazy.root, "secrets", "..v-" + pw)
        os.makedirs(vdir)
        with open(os.path.join(vdir, "password"), "w") as f:
            f.write(pw + "\n")
        data = os.path.join(lazy.root, "secrets", "..data")
        old = os.path.realpath(data) if os.path.islink(data) else None
        os.symlink(os.path.basename(vdir), data + "_tmp")
        os.rename(data + "_tmp", data)
        if old:
            shutil.rmtree(old)
        else:
            os.symlink("..data/password", os.path.join(lazy.root, "secrets", "password"))
    else:
        secret = os.path.join(lazy.root, "secret")
        with open(secret, "w") as f:
            f.write(pw + "\n")
        os.chmod(secret, 0o600)


def mount_with(lazy, reg, how, user, opts):
    """Mount the image with the credentials where `how` keeps them; its read file."""
    if how == "auth.json":
        lazy.env["REGISTRY_AUTH_FILE"] = os.path.join(lazy.root, "auth.json")
    elif how == "helper":
        secret = os.path.join(lazy.root, "secret")
        lazy.credential_helper(reg.host, "rotating", f"printf '{{\"Username\":\"{user}\","
                               f"\"Secret\":\"%s\"}}' \"$(cat {secret})\"\n")
    else:
        pwf = os.path.join(lazy.root, "secrets", "password") if how == "secret-volume" else \
            os.path.join(lazy.root, "secret")
        opts += f",username={user},password-file={pwf}"
    return lazy.mount(reg.ref("private/rotated", "v1"), opts=opts) + "/data/r0.bin"


@pytest.mark.parametrize("how", ["auth.json", "helper", "password-file", "secret-volume"])
def test_a_rotated_password_is_read_again(lazy, token_registry, image, how):
    reg, ts = token_registry, token_registry.tokens

    def set_password(pw):
        ts.users["carol"] = pw
        write_password(lazy, reg, how, "carol", pw)

    set_password("first-" + os.urandom(4).hex())
    ts.expiry = 3
    try:
        path = mount_with(lazy, reg, how, "carol", "insecure,timeout=5")
        assert child_read(path, 0, 8192) == image[:8192]
        set_password("second-" + os.urandom(4).hex())
        time.sleep(4)  # the daemon's token has expired
        for off in (2 * MiB, 4 * MiB):
            assert child_read(path, off, 8192) == image[off:off + 8192], off
        lazy.umount(os.path.dirname(os.path.dirname(path)))
        lazy.assert_nothing_left()
    finally:
        ts.expiry = 300
        ts.users.pop("carol", None)


@pytest.mark.parametrize("how", ["auth.json", "password-file"])
def test_a_password_file_fixed_late_is_taken_at_once(lazy, token_registry, image, how):
    """The password was rotated at the registry before the file was: reads fail meanwhile
    (each refusal finds the same credentials again). Once the file is fixed, the next read
    takes them: a file is read again at every refusal (only a credential helper waits
    between lookups, longer while it gives the same ones)."""
    reg, ts = token_registry, token_registry.tokens
    ts.users["dan"] = "first"
    write_password(lazy, reg, how, "dan", "first")
    ts.expiry = 3
    try:
        path = mount_with(lazy, reg, how, "dan", "insecure,timeout=3")
        assert child_read(path, 0, 8192) == image[:8192]
        ts.users["dan"] = "second"  # rotated at the registry; the file still has the old one
        time.sleep(4)  # the daemon's token has expired
        for off in (1 * MiB, 2 * MiB):
            with pytest.raises(OSError):
                child_read(path, off, 8192)
        write_password(lazy, reg, how, "dan", "second")
        assert child_read(path, 4 * MiB, 8192) == image[4 * MiB:4 * MiB + 8192]
        lazy.umount(os.path.dirname(os.path.dirname(path)))
        lazy.assert_nothing_left()
    finally:
        ts.expiry = 300
        ts.users.pop("dan", None)
