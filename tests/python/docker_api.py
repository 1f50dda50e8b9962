"""docker-py (PyPI `docker`) against capsad: the SDK's high-level and low-level calls, with
API-level assertions. Run by tests/e2e/daemon.rs with DOCKER_HOST set and the image `bb:1`
loaded; exits non-zero (with the failed assertion) on any failure."""

import io
import os
import sys
import tarfile
import time

import docker
from docker.errors import APIError, ImageNotFound, NotFound

client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], version="auto", timeout=60)
api = client.api


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


# System.
check(client.ping() is True, "ping")
v = client.version()
check(v["ApiVersion"] == "1.47" and v["Os"] == "linux", f"version {v}")
info = client.info()
check(info["Images"] >= 1 and info["Driver"] == "overlay2", f"info {info['Images']} {info['Driver']}")

# Images.
img = client.images.get("bb:1")
check("bb:1" in img.tags, f"tags {img.tags}")
img.tag("bb", "py")
check("bb:py" in client.images.get("bb:1").tags, "tag")
check(len(img.history()) >= 1, "history")
check(any("bb:1" in i.tags for i in client.images.list()), "images.list")
check(client.images.list(filters={"reference": "bb:py"})[0].id == img.id, "reference filter")
try:
    client.images.get("nosuch:1")
    check(False, "a missing image is ImageNotFound")
except ImageNotFound:
    pass

# containers.run in the foreground: the output, stdout and stderr apart.
out = client.containers.run("bb:1", ["sh", "-c", "echo hi; echo err >&2"], network_mode="none", remove=True)
check(out == b"hi\n", f"run output {out!r}")
err = client.containers.run("bb:1", ["sh", "-c", "echo hi; echo err >&2"], network_mode="none", remove=True, stdout=False, stderr=True)
check(err == b"err\n", f"run stderr {err!r}")
try:
    client.containers.run("bb:1", ["sh", "-c", "exit 3"], network_mode="none", remove=True)
    check(False, "a non-zero exit raises ContainerError")
except docker.errors.ContainerError as e:
    check(e.exit_status == 3, f"exit status {e.exit_status}")

# A detached container: attrs, logs, exec, top, stats, archive, pause, rename, update, stop.
c = client.containers.run("bb:1", ["sh", "-c", "echo up; sleep 300"], name="pybox", detach=True,
                          network_mode="none", labels={"sdk": "py"}, environment={"K": "v"})
c.reload()
check(c.status == "running" and c.name == "pybox", f"status {c.status} {c.name}")
check(c.labels == {"sdk": "py"}, f"labels {c.labels}")
check("K=v" in c.attrs["Config"]["Env"], "env in Config.Env")
check(client.containers.list(filters={"label": "sdk=py"})[0].id == c.id, "label filter")
deadline = time.time() + 5
while c.logs() != b"up\n" and time.time() < deadline:
    time.sleep(0.1)
check(c.logs() == b"up\n", f"logs {c.logs()!r}")
code, output = c.exec_run(["sh", "-c", "echo $K; exit 4"])
check(code == 4 and output == b"v\n", f"exec_run {code} {output!r}")
code, (o, e) = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
check(code == 0 and o == b"o\n" and e == b"e\n", f"exec demux {o!r} {e!r}")
top = c.top()
check("Titles" in top and any("sleep" in " ".join(p) for p in top["Processes"]), f"top {top}")
stats = c.stats(stream=False)
check(stats["pids_stats"]["current"] >= 1 and stats["memory_stats"]["usage"] > 0, f"stats {stats}")
check(stats["cpu_stats"]["system_cpu_usage"] > stats["precpu_stats"].get("system_cpu_usage", 0), "precpu")

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    data = b"put by docker-py\n"
    ti = tarfile.TarInfo("put.txt")
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
check(c.put_archive("/tmp", buf.getvalue()), "put_archive")
stream, stat = c.get_archive("/tmp/put.txt")
check(stat["name"] == "put.txt" and stat["size"] == 17, f"stat {stat}")
with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as t:
    check(t.extractfile("put.txt").read() == b"put by docker-py\n", "get_archive content")
changes = c.diff()
check(any(ch["Path"] == "/tmp/put.txt" for ch in changes), f"diff {changes}")

c.pause()
c.reload()
check(c.status == "paused", f"paused {c.status}")
c.unpause()
c.rename("pybox2")
c.reload()
check(c.name == "pybox2", f"rename {c.name}")
c.update(mem_limit="64m", restart_policy={"Name": "on-failure", "MaximumRetryCount": 1})
c.reload()
check(c.attrs["HostConfig"]["Memory"] == 64 << 20, f"update memory {c.attrs['HostConfig']['Memory']}")
check(c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure", "update restart policy")
since = time.time()
c.stop(timeout=1)
result = c.wait()
check(result["StatusCode"] == 137, f"wait after stop {result}")
events = list(client.events(since=since, until=time.time() + 0.5, decode=True, filters={"container": c.id}))
actions = [e["Action"] for e in events]
check("die" in actions and "stop" in actions, f"events {actions}")
image = c.commit("bb", "committed")
check("bb:committed" in image.tags, f"commit {image.tags}")
c.remove()
try:
    client.containers.get("pybox2")
    check(False, "a removed container is NotFound")
except NotFound:
    pass

# The low-level API: create, attach-less start, wait, a conflict, kill.
cid = api.create_container("bb:1", ["sleep", "300"], name="lowlevel",
                           host_config=api.create_host_config(network_mode="none"))["Id"]
api.start(cid)
check(api.inspect_container(cid)["State"]["Running"], "low-level start")
try:
    api.create_container("bb:1", ["true"], name="lowlevel")
    check(False, "a taken name is a conflict")
except APIError as e:
    check(e.status_code == 409, f"conflict status {e.status_code}")
try:
    api.remove_container(cid)
    check(False, "removing a running container needs force")
except APIError as e:
    check(e.status_code == 409, f"remove running {e.status_code}")
api.kill(cid, signal="SIGKILL")
check(api.wait(cid)["StatusCode"] == 137, "kill + wait")
api.remove_container(cid, v=True)

# Volumes.
vol = client.volumes.create("pyvol", labels={"x": "y"})
check(vol.name == "pyvol" and vol.attrs["Driver"] == "local", f"volume {vol.attrs}")
out = client.containers.run("bb:1", ["sh", "-c", "echo data > /v/f; cat /v/f"], network_mode="none",
                            remove=True, volumes={"pyvol": {"bind": "/v", "mode": "rw"}})
check(out == b"data\n", f"volume run {out!r}")
check(any(v.name == "pyvol" for v in client.volumes.list(filters={"label": "x=y"})), "volumes.list")
vol.remove()
check(not any(v.name == "pyvol" for v in client.volumes.list()), "volume removed")

# Prune.
client.containers.run("bb:1", ["true"], name="dead", network_mode="none")
pruned = client.containers.prune()
check(any(True for _ in pruned["ContainersDeleted"] or []), f"prune {pruned}")
client.images.remove("bb:committed")
client.images.remove("bb:py")
df = api.df()
check("Images" in df and "Volumes" in df, "df")
print("docker-py: all checks passed")
