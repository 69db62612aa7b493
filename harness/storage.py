"""Where a Ray Train run keeps its checkpoints: a folder every node reaches, or S3.

Locally, the head and the worker nodes are processes on one machine, so a folder on its
disk is shared storage. Kubernetes pods share no disk; there the run goes to an
S3-compatible object store (the in-cluster MinIO that `CHECKPOINTS=1
./scripts/install-ray.sh` installs, or any S3 bucket), named by an `s3://bucket/prefix`
location. The endpoint comes from AWS_ENDPOINT_URL (e.g. http://ray-checkpoints:9000) and
the credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the variables the AWS
tools use; without AWS_ENDPOINT_URL the location is a real AWS bucket.

The driver builds one pyarrow filesystem and hands it to Ray Train
(`RunConfig(storage_filesystem=...)`), which ships it to every worker with the
credentials in it, so worker processes need no settings of their own. The driver's own
small files beside Ray Train's (run_status.json, progress.json) go through the same
filesystem: `read_json` and `write_json` here work for both kinds of location.
"""

import json
import os
import posixpath

S3_PREFIX = "s3://"


def is_remote(location):
    """True for an `s3://` location, False for a local folder."""
    return str(location).startswith(S3_PREFIX)


def normalize(location):
    """A local folder made absolute (workers run in other directories); S3 kept as is."""
    if is_remote(location):
        bucket_and_prefix = location[len(S3_PREFIX):].strip("/")
        if not bucket_and_prefix or "?" in bucket_and_prefix:
            raise ValueError(f"Storage location '{location}' is not of the form s3://bucket/prefix. "
                             "Give the endpoint in AWS_ENDPOINT_URL, not in the location.")
        return S3_PREFIX + bucket_and_prefix
    return os.path.abspath(location)


def join(location, *names):
    """`location/name/...` for both kinds of location."""
    if is_remote(location):
        return posixpath.join(location, *names)
    return os.path.join(location, *names)


def s3_filesystem(allow_bucket_creation=False):
    """A pyarrow S3 filesystem from AWS_ENDPOINT_URL and the AWS credential variables."""
    from pyarrow import fs

    options = {"allow_bucket_creation": allow_bucket_creation}
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        options.update(endpoint_override=host.rstrip("/"), scheme=scheme or "https")
        # An in-cluster store has no region or instance metadata; without these the AWS
        # SDK would spend seconds asking an EC2 metadata service that is not there.
        options["region"] = os.environ.get("AWS_REGION", "us-east-1")
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        # Explicit keys travel with the pickled filesystem to Ray Train's workers.
        options.update(access_key=key, secret_key=secret)
    return fs.S3FileSystem(**options)


def filesystem_and_path(location):
    """(pyarrow filesystem, path inside it) for a location, local or S3."""
    from pyarrow import fs

    if is_remote(location):
        return s3_filesystem(), location[len(S3_PREFIX):]
    return fs.LocalFileSystem(), os.path.abspath(location)


def prepare(location):
    """Create the folder, or check the S3 bucket answers (creating it when missing).

    Raises ValueError with what to do when the storage cannot be reached or written.
    """
    if not is_remote(location):
        try:
            os.makedirs(location, exist_ok=True)
        except OSError as error:
            raise ValueError(f"Cannot create the checkpoint folder {location} ({error.strerror}). "
                             "Choose a writable --storage-path (CHECKPOINT_DIR).") from None
        if not os.access(location, os.W_OK):
            raise ValueError(f"The checkpoint folder {location} is not writable. Choose a writable "
                             "--storage-path (CHECKPOINT_DIR).")
        return
    bucket = location[len(S3_PREFIX):].split("/", 1)[0]
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    try:
        s3_filesystem(allow_bucket_creation=True).create_dir(bucket)
        filesystem, path = filesystem_and_path(location)
        probe = posixpath.join(path, ".write-probe")
        with filesystem.open_output_stream(probe) as out:
            out.write(b"ok")
        filesystem.delete_file(probe)
    except OSError as error:
        raise ValueError(
            f"Cannot write checkpoints to {location} at {endpoint}: {str(error).splitlines()[0]}. "
            "Check AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (on Kubernetes: "
            "CHECKPOINTS=1 ./scripts/install-ray.sh installs the store and sets them in the pods).") from None


def ray_storage(location):
    """The keyword arguments of RunConfig that put the run at `location`."""
    if not is_remote(location):
        return {"storage_path": location}
    filesystem, path = filesystem_and_path(location)
    return {"storage_path": path, "storage_filesystem": filesystem}


def read_json(location):
    """The JSON object at `location` (a local path or s3://), or None when missing or unreadable."""
    try:
        if is_remote(location):
            filesystem, path = filesystem_and_path(location)
            with filesystem.open_input_stream(path) as source:
                value = json.loads(source.read().decode("utf-8"))
        else:
            with open(location, encoding="utf-8") as source:
                value = json.load(source)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(location, value):
    """Write `value` as JSON, whole or not at all (an S3 object is replaced in one PUT)."""
    if not is_remote(location):
        from harness import results

        results.write_json_atomic(location, value)
        return
    filesystem, path = filesystem_and_path(location)
    with filesystem.open_output_stream(path) as out:
        out.write(json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))


def list_folders(location):
    """Names of the folders directly under `location` ([] when it does not exist)."""
    if not is_remote(location):
        if not os.path.isdir(location):
            return []
        return [name for name in os.listdir(location) if os.path.isdir(os.path.join(location, name))]
    from pyarrow import fs

    filesystem, path = filesystem_and_path(location)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []
    return [posixpath.basename(info.path) for info in infos if info.type == fs.FileType.Directory]


def exists(location):
    """True when a file exists at `location`."""
    if not is_remote(location):
        return os.path.exists(location)
    from pyarrow import fs

    filesystem, path = filesystem_and_path(location)
    try:
        return filesystem.get_file_info(path).type != fs.FileType.NotFound
    except OSError:
        return False
