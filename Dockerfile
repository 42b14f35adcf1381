# The sandbox image: a stock Python plus the stdlib-only REPL server, nothing else.
#
# BASE_IMAGE is python:3.12-slim where a registry is reachable; hosts that cannot pull
# build a Debian base locally instead (`rlm-sandbox image build --bootstrap`). Both
# put python3 on PATH, which is all this file relies on. No RUN steps, so building
# never executes anything from the base and needs no network.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

# Root-owned (COPY's default), and world-readable because rlm-sandbox packs the
# build context with mode 0644: the unprivileged server can read it, never change it.
COPY sandbox_image/repl_server.py /opt/rlm/repl_server.py

# nobody:nogroup by number, so it works whether or not the base has a passwd entry.
# DockerSandbox sets the same user again; this is the default for anyone else.
USER 65534:65534
# The only writable place in the running sandbox is the /tmp tmpfs.
WORKDIR /tmp

# -I: ignore PYTHON* variables and the user site-packages, keep the cwd off sys.path.
# -B: the root filesystem is read-only, so never try to write .pyc files.
ENTRYPOINT ["python3", "-I", "-B", "/opt/rlm/repl_server.py"]
