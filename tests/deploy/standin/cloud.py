#!/usr/bin/env python3
"""A local stand-in for the Google Cloud and AWS APIs the deploy scripts use.

    python3 cloud.py --port 0 --record calls.jsonl --state-dir DIR

The real `gcloud` and `aws` are pointed at it (see env.sh), so their own parsers check every
flag and their own code builds every request. Each request is appended to the record file as
one JSON line:

    {"service": "run", "method": "POST", "path": "/run/apis/...", "query": {...},
     "body": <JSON, form fields or text>, "target": <X-Amz-Target or Action>,
     "op": "run.services.create", "status": 200, "region": "europe-west1"}

and answered from a small in-memory model, one dict per resource type, so that a describe
after a create finds the resource and a fresh project or account starts empty. A request with
no handler is recorded with op "UNHANDLED" and answered with an error naming it, so a gap
shows at once instead of passing as "not found".

The state directory holds switches a test sets by creating files:
    check-fails  while it exists, Cloud Run job executions and ECS tasks end in failure
                 (exit code 1)
    rollback     while it exists, App Runner updates end ROLLBACK_SUCCEEDED and ECS Express
                 updates ROLLBACK_SUCCESSFUL, and the previous configuration stays
    build-fails  while it exists, Cloud Build builds end FAILURE
    images       images that exist, one reference a line: Artifact Registry
                 (REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG) and ECR
                 (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG); docker never goes through
                 the stand-in, though an image a Cloud Build build made exists too
    logs         log lines, returned by `gcloud run services logs read` and by
                 `aws logs filter-log-events` / `get-log-events`
and receives state.json (the model after every change) and cloud.log (the stand-in's own
errors, and each request it had no handler for) for a look when a test fails.

Google Cloud: gcloud is given CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>=http://127.0.0.1:PORT/<api>/
and, because `gcloud run` derives a regional host by prefixing the region to the override's
host name (http://europe-west1-127.0.0.1:PORT/run/), gcloud's HTTP proxy is also set to this
server: it then receives those requests in absolute form and needs no name resolution. A
CONNECT (an API not overridden) is refused and recorded, so nothing leaves the machine.
Cloud Build's log tailer reads https://storage.googleapis.com/... directly, whatever the
settings say, so builds answer with options.logging NONE and gcloud only polls them.

AWS: aws is given AWS_ENDPOINT_URL=http://127.0.0.1:PORT; the service is the signing name in
the Authorization header's credential scope (CloudWatch's, "monitoring", is recorded as
"cloudwatch"), the operation the X-Amz-Target header (JSON protocols) or the Action form field
(query protocols). Errors come back in each protocol's own shape, so the CLI prints them as it
would the real service's.

Python standard library only.
"""

import argparse
import base64
import copy
import datetime
import hashlib
import http.server
import json
import os
import random
import re
import string
import sys
import threading
import time
import traceback
import types
import urllib.parse
import uuid
from xml.sax.saxutils import escape

# ---------------------------------------------------------------------------------------------
# Plumbing
# ---------------------------------------------------------------------------------------------

ACCOUNT = "123456789012"  # the AWS account every request acts as
GCP_APIS = ("run", "serviceusage", "artifactregistry", "secretmanager", "iam", "compute",
            "cloudresourcemanager", "cloudbuild", "logging", "monitoring", "storage")

LOCK = threading.Lock()  # one request at a time touches the model
ARGS = None
STATE = {}  # filled by reset_state()


def reset_state():
    STATE.clear()
    STATE.update({
        # Google Cloud, keyed by project (and region or location where the API has one)
        "enabled_services": {},   # project -> set of service names
        "ar_repositories": {},    # "projects/P/locations/L/repositories/R" -> repository
        "secrets": {},            # "projects/P/secrets/S" -> secret
        "secret_versions": {},    # "projects/P/secrets/S" -> [version, ...]
        "service_accounts": {},   # email -> service account
        "iam_policies": {},       # resource path -> policy
        "operations": {},         # long-running operation name -> operation
        "run_services": {},       # (project, region, name) -> Knative service
        "run_revisions": {},      # (project, region, name) -> revision
        "run_jobs": {},           # (project, region, name) -> job
        "run_executions": {},     # (project, region, name) -> execution
        "compute": {},            # "projects/P/(global|regions/R)/KIND/NAME" -> resource
        "gcs_buckets": {},        # name -> bucket
        "gcs_objects": {},        # (bucket, name) -> object metadata (the content is not kept)
        "builds": {},             # id -> Cloud Build build
        "built_images": set(),    # image references pushed by a Cloud Build build
        "monitoring": {},         # "projects/P/dashboards/ID" etc. -> resource
        "log_metrics": {},        # "projects/P/metrics/NAME" -> log-based metric
        # AWS, in the one account; ARNs carry the request's region
        "ecr_repositories": {},   # name -> repository
        "iam_roles": {},          # name -> role (with attached and inline policies)
        "sm_secrets": {},         # name -> secret (with versions)
        "ecs_services": {},       # arn -> express gateway service
        "ecs_deployments": {},    # arn -> service deployment
        "ecs_revisions": {},      # arn -> service revision
        "ecs_task_definitions": {},  # "family:revision" -> task definition
        "ecs_tasks": {},          # arn -> task
        "apprunner_services": {},  # arn -> service
        "apprunner_operations": {},  # service arn -> [operation, ...] newest first
        "apprunner_scaling": {},  # name -> [configuration revision, ...]
        "ec2": {},                # id -> resource (vpc, subnet, address, natgw, igw, rtb, sg)
        "log_groups": {},         # name -> log group
        "metric_filters": {},     # (log group, filter name) -> filter
        "sns_topics": {},         # arn -> {"Attributes": ..., "Subscriptions": [...]}
        "apprunner_connectors": {},  # name -> [VPC connector revision, ...]
        "apprunner_observability": {},  # name -> [observability configuration revision, ...]
        "dashboards": {},         # name -> body
        "alarms": {},             # name -> alarm
    })


class ApiError(Exception):
    """An error answer; each protocol renders it the way the real service does."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rand(n, alphabet=string.ascii_lowercase + string.digits):
    return "".join(random.choice(alphabet) for _ in range(n))


def flag(name):
    """A switch file in the state directory."""
    return bool(ARGS.state_dir) and os.path.exists(os.path.join(ARGS.state_dir, name))


def state_file_lines(name):
    """The lines of a switch file in the state directory (none when it is absent)."""
    path = os.path.join(ARGS.state_dir or "", name)
    if not ARGS.state_dir or not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


PROJECT_IDS = {}  # project number -> project id, for paths that name a project by number


def project_number(project):
    # Stable per project id, so names built from it stay the same across calls.
    number = str(100000000000 + int(hashlib.sha256(project.encode()).hexdigest()[:10], 16) % 899999999999)
    PROJECT_IDS[number] = project
    return number


def save_state():
    if not ARGS.state_dir:
        return

    def default(o):
        return sorted(o) if isinstance(o, set) else str(o)
    flat = {k: ({"|".join(kk) if isinstance(kk, tuple) else kk: vv for kk, vv in v.items()}
                if isinstance(v, dict) else v) for k, v in STATE.items()}
    tmp = os.path.join(ARGS.state_dir, "state.json.tmp")
    with open(tmp, "w") as f:
        json.dump(flat, f, indent=1, default=default, sort_keys=True)
    os.replace(tmp, os.path.join(ARGS.state_dir, "state.json"))


class Request:
    """One parsed request: where it went, what it carried."""

    def __init__(self, handler, body):
        self.method = handler.command
        raw = handler.path
        if raw.startswith("http://") or raw.startswith("https://"):  # through the proxy
            parts = urllib.parse.urlsplit(raw)
            self.host, path, query = parts.netloc, parts.path, parts.query
        else:
            self.host = handler.headers.get("Host", "")
            path, _, query = raw.partition("?")
        self.path = urllib.parse.unquote(path)
        self.query = {}
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
            self.query[k] = v if k not in self.query else (
                self.query[k] + [v] if isinstance(self.query[k], list) else [self.query[k], v])
        self.headers = handler.headers
        self.raw = body
        self.ctype = handler.headers.get("Content-Type", "")
        self.json, self.form, self.body, self.multipart = None, None, None, None
        text = body.decode("utf-8", "replace") if body else ""
        if self.ctype.startswith("multipart/"):
            # An upload: its JSON parts are kept, other parts recorded by size only.
            self.multipart = multipart_parts(body, self.ctype)
            self.body = [p if isinstance(p, dict) else "<%d bytes>" % len(p) for p in self.multipart]
        elif "x-www-form-urlencoded" in self.ctype:
            self.form = {}
            for k, v in urllib.parse.parse_qsl(text, keep_blank_values=True):
                self.form[k] = v
            self.body = self.form
        elif text:
            try:
                self.json = json.loads(text)
                self.body = self.json
            except ValueError:
                self.body = text
        self.target = handler.headers.get("X-Amz-Target") or (self.form or {}).get("Action")
        auth = handler.headers.get("Authorization", "")
        m = re.search(r"Credential=[^/]*/[^/]*/([^/]*)/([^/]*)/aws4_request", auth)
        self.aws = bool(m)
        self.aws_region, self.aws_service = (m.group(1), m.group(2)) if m else (None, None)
        # A Cloud Run regional host looks like "europe-west1-127.0.0.1:PORT".
        own = "127.0.0.1:%d" % ARGS.bound_port
        self.region = self.host[:-len(own) - 1] if self.host.endswith("-" + own) else None
        self.service = None
        self.op = None


def multipart_parts(body, ctype):
    m = re.search(r"""boundary=["']?([^"';]+)["']?""", ctype)
    if not m:
        return [body]
    parts = []
    for chunk in body.split(b"--" + m.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.lstrip(b"\r\n").partition(b"\n\n") if b"\r\n\r\n" not in chunk else \
            chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        content = content[:-2] if content.endswith(b"\r\n") else content[:-1] if content.endswith(b"\n") else content
        try:
            parts.append(json.loads(content) if b"json" in head.lower() else content)
        except ValueError:
            parts.append(content)
    return parts


def record(req, status):
    entry = {"service": req.service, "method": req.method, "path": req.path, "query": req.query,
             "body": req.body, "target": req.target, "op": req.op, "status": status}
    if req.region or req.aws_region:
        entry["region"] = req.region or req.aws_region
    line = json.dumps(entry, sort_keys=True)
    if ARGS.record:
        with open(ARGS.record, "a") as f:
            f.write(line + "\n")
    if req.op == "UNHANDLED":
        sys.stderr.write("cloud.py: UNHANDLED %s %s %s %s\n" % (req.service, req.method, req.path, req.target or ""))
        sys.stderr.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cloud-standin/1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, ctype, extra=None):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_CONNECT(self):
        # An API that was not pointed at the stand-in: refuse, and say which.
        req = types.SimpleNamespace(service="connect", method="CONNECT", path=self.path, query={}, body=None,
                                    target=None, op="UNHANDLED", region=None, aws_region=None)
        with LOCK:
            record(req, 502)
        self.reply(502, "cloud stand-in: refusing to tunnel to %s; point that API at the stand-in "
                   "(CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>)\n" % self.path, "text/plain",
                   {"Connection": "close"})
        self.close_connection = True

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self.read_chunked()
        req = Request(self, body)
        with LOCK:
            try:
                if req.aws:
                    status, data, ctype, extra = aws_dispatch(req)
                else:
                    status, data, ctype, extra = gcp_dispatch(req)
            except Exception:  # a bug in the stand-in itself: say so loudly
                tb = traceback.format_exc()
                sys.stderr.write(tb)
                req.op = req.op or "CRASH"
                status, data, ctype, extra = 500, json.dumps(
                    {"error": {"code": 500, "status": "INTERNAL", "message": "cloud stand-in crashed: " + tb}}), \
                    "application/json", {}
            record(req, status)
            if 200 <= status < 300 and req.method != "GET":
                save_state()
        self.reply(status, data, ctype, extra)

    def read_chunked(self):
        out = b""
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


# ---------------------------------------------------------------------------------------------
# Google Cloud
# ---------------------------------------------------------------------------------------------

GCP_ROUTES = []  # (method, compiled regex, op name, function)


def gcp(method, pattern, op):
    def register(fn):
        GCP_ROUTES.append((method, re.compile("^" + pattern + "$"), op, fn))
        return fn
    return register


def not_found(message):
    return ApiError(404, "NOT_FOUND", message)


def gcp_dispatch(req):
    prefix, _, rest = req.path.lstrip("/").partition("/")
    if prefix == "upload":  # media uploads: /upload/storage/v1/... -> storage, /upload/v1/...
        prefix, _, rest = rest.partition("/")
        rest = "upload/" + rest
    req.service = prefix if prefix in GCP_APIS else (prefix or "unknown")
    rest = "/" + rest
    try:
        for method, rx, op, fn in GCP_ROUTES:
            m = rx.match(rest)
            if m and method == req.method and (op.split(".")[0] == req.service or op.startswith("*")):
                req.op = op.lstrip("*") if not op.startswith("*") else req.service + op[1:]
                groups = m.groupdict()
                for k in ("ns", "project"):  # the API takes a project's number for its id
                    if groups.get(k) in PROJECT_IDS:
                        groups[k] = PROJECT_IDS[groups[k]]
                status, obj = fn(req, **groups)
                if isinstance(obj, bytes):  # object media
                    return status, obj, "text/plain", {}
                return status, json.dumps(obj), "application/json", {}
        req.op = "UNHANDLED"
        raise not_found("cloud stand-in has no handler for %s %s (API %s); add one in "
                        "tests/deploy/standin/cloud.py" % (req.method, req.path, req.service))
    except ApiError as e:
        status_names = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 416: "OUT_OF_RANGE",
                        409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION"}
        err = {"code": e.status, "message": e.message, "status": e.code or status_names.get(e.status, "UNKNOWN")}
        if req.service == "compute":  # compute's errors carry a list of reasons
            err["errors"] = [{"message": e.message, "domain": "global",
                              "reason": {404: "notFound", 409: "alreadyExists"}.get(e.status, "invalid")}]
        return e.status, json.dumps({"error": err}), "application/json", {}


def done_operation(name, response=None, metadata=None):
    op = {"name": name, "done": True}
    if response is not None:
        op["response"] = response
    if metadata is not None:
        op["metadata"] = metadata
    STATE["operations"][name] = op
    return op


@gcp("GET", r"/v1/(?P<name>(projects/[^/]+/locations/[^/]+/)?operations/.+)", "*.operations.get")
def op_get(req, name, **_):
    if name in STATE["operations"]:
        return 200, STATE["operations"][name]
    raise not_found("Operation %s not found." % name)


# ---- IAM policies on any resource (secrets, Run services, projects) ----

def policy_key(req, resource):
    return req.service + ":" + resource


@gcp("GET", r"/v\d\w*/(?P<resource>.+):getIamPolicy", "*.getIamPolicy")
@gcp("POST", r"/v\d\w*/(?P<resource>.+):getIamPolicy", "*.getIamPolicy")
def iam_get_policy(req, resource):
    if req.service == "secretmanager" and resource not in STATE["secrets"]:
        raise not_found("Secret [%s] not found or has no versions." % resource)
    return 200, STATE["iam_policies"].get(policy_key(req, resource), {"version": 1, "etag": "ACAB"})


@gcp("POST", r"/v\d\w*/(?P<resource>.+):setIamPolicy", "*.setIamPolicy")
def iam_set_policy(req, resource):
    if req.service == "secretmanager" and resource not in STATE["secrets"]:
        raise not_found("Secret [%s] not found or has no versions." % resource)
    policy = dict((req.json or {}).get("policy") or {})
    policy["etag"] = base64.b64encode(os.urandom(6)).decode()
    policy.setdefault("version", 1)
    STATE["iam_policies"][policy_key(req, resource)] = policy
    return 200, policy


@gcp("POST", r"/v\d\w*/(?P<resource>.+):testIamPermissions", "*.testIamPermissions")
def iam_test_permissions(req, resource):
    # The caller holds every permission it asks about.
    return 200, {"permissions": (req.json or {}).get("permissions", [])}


# ---- Service Usage ----

def su_service(project, name):
    enabled = name in STATE["enabled_services"].get(project, set())
    return {"name": "projects/%s/services/%s" % (project_number(project), name),
            "parent": "projects/" + project_number(project),
            "config": {"name": name, "title": name}, "state": "ENABLED" if enabled else "DISABLED"}


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/services/(?P<name>[^/:]+)", "serviceusage.services.get")
def su_get(req, project, name):
    return 200, su_service(project, name)


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/services", "serviceusage.services.list")
def su_list(req, project):
    names = sorted(STATE["enabled_services"].get(project, set()))
    return 200, {"services": [su_service(project, n) for n in names]}


@gcp("POST", r"/v1/projects/(?P<project>[^/]+)/services:batchEnable", "serviceusage.services.batchEnable")
@gcp("POST", r"/v1/projects/(?P<project>[^/]+)/services/(?P<name>[^/:]+):enable", "serviceusage.services.enable")
def su_enable(req, project, name=None):
    names = [name] if name else (req.json or {}).get("serviceIds", [])
    STATE["enabled_services"].setdefault(project, set()).update(names)
    return 200, done_operation("operations/noop.DONE_OPERATION", response={
        "@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse",
        "services": [su_service(project, n) for n in names]})


@gcp("POST", r"/v1/projects/(?P<project>[^/]+)/services/(?P<name>[^/:]+):disable", "serviceusage.services.disable")
def su_disable(req, project, name):
    STATE["enabled_services"].setdefault(project, set()).discard(name)
    return 200, done_operation("operations/noop.DONE_OPERATION", response={
        "@type": "type.googleapis.com/google.api.serviceusage.v1.DisableServiceResponse",
        "service": su_service(project, name)})


# ---- Cloud Resource Manager ----

@gcp("GET", r"/v1/projects/(?P<project>[^/:]+)", "cloudresourcemanager.projects.get")
def crm_get_v1(req, project):
    return 200, {"projectId": project, "projectNumber": project_number(project), "name": project,
                 "lifecycleState": "ACTIVE", "createTime": "2024-01-01T00:00:00.000Z"}


@gcp("GET", r"/v3/projects/(?P<project>[^/:]+)", "cloudresourcemanager.projects.get")
def crm_get_v3(req, project):
    return 200, {"name": "projects/" + project_number(project), "projectId": project,
                 "displayName": project, "state": "ACTIVE", "createTime": "2024-01-01T00:00:00.000Z"}


# ---- Artifact Registry ----

@gcp("GET", r"/v1/(?P<name>projects/[^/]+/locations/[^/]+/repositories/[^/:]+)", "artifactregistry.repositories.get")
def ar_get(req, name):
    if name not in STATE["ar_repositories"]:
        raise not_found("Requested entity was not found.")
    return 200, STATE["ar_repositories"][name]


@gcp("POST", r"/v1/(?P<parent>projects/[^/]+/locations/[^/]+)/repositories", "artifactregistry.repositories.create")
def ar_create(req, parent):
    name = parent + "/repositories/" + req.query.get("repositoryId", "")
    if name in STATE["ar_repositories"]:
        raise ApiError(409, "ALREADY_EXISTS", "the repository already exists")
    repo = dict(req.json or {})
    repo.update(name=name, createTime=now_rfc3339(), updateTime=now_rfc3339(), sizeBytes="0")
    if repo.get("mode") in (None, "MODE_UNSPECIFIED"):
        repo["mode"] = "STANDARD_REPOSITORY"
    STATE["ar_repositories"][name] = repo
    op_name = parent + "/operations/" + str(uuid.uuid4())
    return 200, done_operation(op_name, response=dict(
        repo, **{"@type": "type.googleapis.com/google.devtools.artifactregistry.v1.Repository"}))


@gcp("GET", r"/v1/(?P<parent>projects/[^/]+/locations/[^/]+)/repositories", "artifactregistry.repositories.list")
def ar_list(req, parent):
    return 200, {"repositories": [r for n, r in sorted(STATE["ar_repositories"].items())
                                  if n.startswith(parent + "/")]}


def ar_image_exists(repo_name, package, tag):
    """Built by a Cloud Build build, or listed in <state-dir>/images (docker pushes elsewhere)."""
    _, project, _, location, _, repo = repo_name.split("/")
    want = "%s-docker.pkg.dev/%s/%s/%s:%s" % (location, project, repo, package, tag)
    return want in STATE["built_images"] or want in [line.strip() for line in state_file_lines("images")]


@gcp("GET", r"/v1/(?P<repo>projects/[^/]+/locations/[^/]+/repositories/[^/]+)/packages/(?P<package>[^/]+)/tags/(?P<tag>[^/]+)",
     "artifactregistry.tags.get")
def ar_tag_get(req, repo, package, tag):
    if repo not in STATE["ar_repositories"] or not ar_image_exists(repo, package, tag):
        raise not_found("Requested entity was not found.")
    digest = "sha256:" + hashlib.sha256(("%s/%s:%s" % (repo, package, tag)).encode()).hexdigest()
    return 200, {"name": "%s/packages/%s/tags/%s" % (repo, package, tag),
                 "version": "%s/packages/%s/versions/%s" % (repo, package, digest)}


@gcp("GET", r"/v1/(?P<repo>projects/[^/]+/locations/[^/]+/repositories/[^/]+)/dockerImages/(?P<image>[^/]+)",
     "artifactregistry.dockerImages.get")
def ar_docker_image_get(req, repo, image):
    if repo not in STATE["ar_repositories"]:
        raise not_found("Requested entity was not found.")
    _, project, _, location, _, repo_id = repo.split("/")
    return 200, {"name": "%s/dockerImages/%s" % (repo, image),
                 "uri": "%s-docker.pkg.dev/%s/%s/%s" % (location, project, repo_id, image),
                 "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                 "uploadTime": now_rfc3339(), "updateTime": now_rfc3339(), "imageSizeBytes": "10485760"}


# ---- Secret Manager ----

def secret_name(project, secret):
    return "projects/%s/secrets/%s" % (project, secret)


def secret_public(name):
    s = dict(STATE["secrets"][name])
    project, secret = name.split("/")[1], name.split("/")[3]
    s["name"] = "projects/%s/secrets/%s" % (project_number(project), secret)
    return s


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+)", "secretmanager.secrets.get")
def sm_get(req, project, secret):
    name = secret_name(project, secret)
    if name not in STATE["secrets"]:
        raise not_found("Secret [%s] not found." % secret_public_name(project, secret))
    return 200, secret_public(name)


def secret_public_name(project, secret):
    return "projects/%s/secrets/%s" % (project_number(project), secret)


@gcp("POST", r"/v1/projects/(?P<project>[^/]+)/secrets", "secretmanager.secrets.create")
def sm_create(req, project):
    secret = req.query.get("secretId", "")
    name = secret_name(project, secret)
    if name in STATE["secrets"]:
        raise ApiError(409, "ALREADY_EXISTS", "Secret [%s] already exists." % secret_public_name(project, secret))
    s = dict(req.json or {})
    s.update(createTime=now_rfc3339(), etag='"%s"' % rand(14))
    STATE["secrets"][name] = s
    STATE["secret_versions"][name] = []
    return 200, secret_public(name)


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/secrets", "secretmanager.secrets.list")
def sm_list(req, project):
    prefix = "projects/%s/secrets/" % project
    return 200, {"secrets": [secret_public(n) for n in sorted(STATE["secrets"]) if n.startswith(prefix)],
                 "totalSize": sum(1 for n in STATE["secrets"] if n.startswith(prefix))}


@gcp("DELETE", r"/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+)", "secretmanager.secrets.delete")
def sm_delete(req, project, secret):
    name = secret_name(project, secret)
    if STATE["secrets"].pop(name, None) is None:
        raise not_found("Secret [%s] not found." % secret_public_name(project, secret))
    STATE["secret_versions"].pop(name, None)
    return 200, {}


@gcp("POST", r"/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+):addVersion", "secretmanager.versions.add")
def sm_add_version(req, project, secret):
    name = secret_name(project, secret)
    if name not in STATE["secrets"]:
        raise not_found("Secret [%s] not found or has no versions." % secret_public_name(project, secret))
    versions = STATE["secret_versions"][name]
    v = {"name": "%s/versions/%d" % (secret_public_name(project, secret), len(versions) + 1),
         "createTime": now_rfc3339(), "state": "ENABLED", "etag": '"%s"' % rand(14),
         "payload": (req.json or {}).get("payload", {})}
    if "dataCrc32c" in v["payload"]:
        v["clientSpecifiedPayloadChecksum"] = True  # gcloud insists the checksum was seen
    versions.append(v)
    return 200, {k: val for k, val in v.items() if k != "payload"}


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+)/versions/(?P<version>[^/:]+):access",
     "secretmanager.versions.access")
def sm_access(req, project, secret, version):
    versions = STATE["secret_versions"].get(secret_name(project, secret)) or []
    if not versions:
        raise not_found("Secret [%s] not found or has no versions." % secret_public_name(project, secret))
    v = versions[-1] if version == "latest" else (versions[int(version) - 1] if version.isdigit()
                                                    and 0 < int(version) <= len(versions) else None)
    if v is None:
        raise not_found("Secret Version [%s/versions/%s] not found." % (secret_public_name(project, secret), version))
    return 200, {"name": v["name"], "payload": v["payload"]}


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+)/versions", "secretmanager.versions.list")
def sm_versions(req, project, secret):
    versions = STATE["secret_versions"].get(secret_name(project, secret))
    if versions is None:
        raise not_found("Secret [%s] not found." % secret_public_name(project, secret))
    return 200, {"versions": [{k: v for k, v in x.items() if k != "payload"} for x in reversed(versions)],
                 "totalSize": len(versions)}


# ---- IAM service accounts ----

@gcp("GET", r"/v1/projects/[^/]+/serviceAccounts/(?P<email>[^/:]+)", "iam.serviceAccounts.get")
def sa_get(req, email):
    if email not in STATE["service_accounts"]:
        raise not_found("Unknown service account")
    return 200, STATE["service_accounts"][email]


@gcp("POST", r"/v1/projects/(?P<project>[^/]+)/serviceAccounts", "iam.serviceAccounts.create")
def sa_create(req, project):
    body = req.json or {}
    account = body.get("accountId", "")
    # The real service's checks (gcloud no longer checks the id itself).
    if not 6 <= len(account) <= 30:
        raise ApiError(400, "INVALID_ARGUMENT", 'The account ID "%s" does not have a length between 6 and 30.' % account)
    if not re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", account):
        raise ApiError(400, "INVALID_ARGUMENT",
                       'The account ID "%s" is invalid: it must start with a lower case letter, followed by '
                       "lower case letters, digits or hyphens, and end with a letter or digit." % account)
    email = "%s@%s.iam.gserviceaccount.com" % (account, project)
    if email in STATE["service_accounts"]:
        raise ApiError(409, "ALREADY_EXISTS", "Service account %s already exists within project projects/%s."
                       % (account, project))
    sa = {"name": "projects/%s/serviceAccounts/%s" % (project, email), "projectId": project,
          "uniqueId": str(random.randrange(10**20, 10**21)), "email": email,
          "etag": "MDEwMjE5MjA=", "oauth2ClientId": str(random.randrange(10**20, 10**21))}
    for k in ("displayName", "description"):
        if (body.get("serviceAccount") or {}).get(k):
            sa[k] = body["serviceAccount"][k]
    STATE["service_accounts"][email] = sa
    return 200, sa


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/serviceAccounts", "iam.serviceAccounts.list")
def sa_list(req, project):
    return 200, {"accounts": [a for a in STATE["service_accounts"].values() if a["projectId"] == project]}


# ---- Cloud Run (Knative-style v1 API on the regional host) ----

KNATIVE = r"/apis/serving\.knative\.dev/v1/namespaces/(?P<ns>[^/]+)"
RUNV1 = r"/apis/run\.googleapis\.com/v1/namespaces/(?P<ns>[^/]+)"


def run_region(req):
    return req.region or "us-central1"


def region_code(region):
    # europe-west1 -> ew, us-central1 -> uc: the short code in *.a.run.app host names.
    parts = re.sub(r"\d+$", "", region).split("-")
    return "".join(p[0] for p in parts if p)


def run_url(project, region, name, tag=None):
    h = hashlib.sha256(project.encode()).hexdigest()[:10]
    host = "%s-%s-%s.a.run.app" % (name, h, region_code(region))
    return "https://" + ("%s---%s" % (tag, host) if tag else host)


def ready_conditions(*types):
    t = now_rfc3339()
    return [{"type": ty, "status": "True", "lastTransitionTime": t} for ty in types]


def k8s_metadata(old, name, ns, kind_path, generation_bump=True):
    md = {"name": name, "namespace": project_number(ns), "selfLink": "%s/%s" % (kind_path, name),
          "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
          "resourceVersion": rand(12), "creationTimestamp": old["metadata"]["creationTimestamp"] if old else now_rfc3339(),
          "generation": (old["metadata"]["generation"] + 1) if old else 1}
    return md


def run_not_found(kind, name, region, project):
    return not_found("Resource '%s' of kind '%s' in region '%s' in project '%s' does not exist."
                     % (name, kind, region, project))


@gcp("GET", KNATIVE + r"/services/(?P<name>[^/]+)", "run.services.get")
def run_service_get(req, ns, name):
    key = (ns, run_region(req), name)
    if key not in STATE["run_services"]:
        raise run_not_found("SERVICE", name, run_region(req), ns)
    return 200, STATE["run_services"][key]


@gcp("GET", KNATIVE + r"/services", "run.services.list")
def run_service_list(req, ns):
    items = [s for (p, r, _), s in sorted(STATE["run_services"].items()) if p == ns and r == run_region(req)]
    return 200, {"apiVersion": "serving.knative.dev/v1", "kind": "ServiceList", "items": items, "metadata": {}}


@gcp("POST", KNATIVE + r"/services", "run.services.create")
def run_service_create(req, ns):
    name = ((req.json or {}).get("metadata") or {}).get("name", "")
    return run_service_write(req, ns, name, create=True)


@gcp("PUT", KNATIVE + r"/services/(?P<name>[^/]+)", "run.services.replace")
def run_service_replace(req, ns, name):
    return run_service_write(req, ns, name, create=False)


def run_service_write(req, ns, name, create):
    region = run_region(req)
    key = (ns, region, name)
    old = STATE["run_services"].get(key)
    if create and old:
        raise ApiError(409, "ALREADY_EXISTS", "Resource '%s' already exists." % name)
    if not create and not old:
        raise run_not_found("SERVICE", name, region, ns)
    svc = copy.deepcopy(req.json or {})
    svc.pop("status", None)
    md = svc.setdefault("metadata", {})
    md.update(k8s_metadata(old, name, ns, "/apis/serving.knative.dev/v1/namespaces/%s/services" % project_number(ns)))
    md.setdefault("labels", {})["cloud.googleapis.com/location"] = region
    spec = svc.setdefault("spec", {})
    template = spec.setdefault("template", {})
    tmd = template.setdefault("metadata", {})
    latest = old["status"]["latestReadyRevisionName"] if old else None
    # Like Knative, a new revision only when the template changed (a traffic-only update
    # sends the same template back).
    new_revision = None
    if old is None or template != old["spec"]["template"]:
        new_revision = tmd.get("name") or "%s-%05d-%s" % (name, md["generation"], rand(3, string.ascii_lowercase))
        if (ns, region, new_revision) in STATE["run_revisions"]:
            raise ApiError(409, "ALREADY_EXISTS", "Revision named '%s' with different configuration already "
                           "exists." % new_revision)
        latest = new_revision
    if not spec.get("traffic"):  # the API's default, written into the spec as the real one does
        spec["traffic"] = [{"percent": 100, "latestRevision": True}]
    traffic = []
    for t in spec["traffic"]:
        e = dict(t)
        if e.get("latestRevision"):
            e["revisionName"] = latest
        elif e.get("revisionName") != new_revision and (ns, region, e.get("revisionName")) not in STATE["run_revisions"]:
            raise ApiError(400, "INVALID_ARGUMENT", "Revision '%s' referenced in traffic not found."
                           % e.get("revisionName"))
        if e.get("tag"):
            e["url"] = run_url(ns, region, name, e["tag"])
        traffic.append(e)
    if new_revision:
        run_revision_create(ns, region, name, new_revision, template, md["generation"])
    url = run_url(ns, region, name)
    svc["status"] = {"observedGeneration": md["generation"],
                     "conditions": ready_conditions("Ready", "ConfigurationsReady", "RoutesReady"),
                     "latestReadyRevisionName": latest, "latestCreatedRevisionName": latest,
                     "traffic": traffic, "url": url, "address": {"url": url}}
    svc.setdefault("apiVersion", "serving.knative.dev/v1")
    svc.setdefault("kind", "Service")
    STATE["run_services"][key] = svc
    return 200, svc


def run_revision_create(ns, region, service, rev_name, template, generation):
    tmd = template.get("metadata") or {}
    labels = dict(tmd.get("labels") or {})
    labels.update({"serving.knative.dev/service": service, "serving.knative.dev/configuration": service,
                   "serving.knative.dev/configurationGeneration": str(generation),
                   "serving.knative.dev/route": service, "cloud.googleapis.com/location": region})
    spec = copy.deepcopy(template.get("spec") or {})
    images = [c.get("image", "") for c in spec.get("containers", [])]
    digest = "sha256:" + hashlib.sha256("|".join(images).encode()).hexdigest()
    STATE["run_revisions"][(ns, region, rev_name)] = {
        "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
        "metadata": {"name": rev_name, "namespace": project_number(ns), "generation": 1,
                     "uid": str(uuid.uuid4()), "resourceVersion": rand(12), "creationTimestamp": now_rfc3339(),
                     "labels": labels, "annotations": dict(tmd.get("annotations") or {}),
                     "selfLink": "/apis/serving.knative.dev/v1/namespaces/%s/revisions/%s" % (project_number(ns), rev_name),
                     "ownerReferences": [{"kind": "Configuration", "name": service, "controller": True,
                                          "apiVersion": "serving.knative.dev/v1", "blockOwnerDeletion": True,
                                          "uid": str(uuid.uuid4())}]},
        "spec": spec,
        "status": {"observedGeneration": 1,
                   "conditions": ready_conditions("Ready", "Active", "ContainerHealthy", "ResourcesAvailable"),
                   "logUrl": "https://console.cloud.google.com/logs/viewer?project=%s" % ns,
                   "imageDigest": (images[0].split(":")[0] if images else "") + "@" + digest,
                   "containerStatuses": [{"name": c.get("name", ""), "imageDigest": c.get("image", "") + "@" + digest}
                                         for c in spec.get("containers", [])]}}


@gcp("DELETE", KNATIVE + r"/services/(?P<name>[^/]+)", "run.services.delete")
def run_service_delete(req, ns, name):
    region = run_region(req)
    svc = STATE["run_services"].pop((ns, region, name), None)
    if svc is None:
        raise run_not_found("SERVICE", name, region, ns)
    for key in [k for k, r in STATE["run_revisions"].items()
                if k[:2] == (ns, region) and r["metadata"]["labels"].get("serving.knative.dev/service") == name]:
        del STATE["run_revisions"][key]
    return 200, {"apiVersion": "v1", "kind": "Status", "status": "Success",
                 "details": {"name": name, "kind": "services", "uid": svc["metadata"]["uid"]}}


def label_selector_matches(selector, labels):
    for term in filter(None, (selector or "").split(",")):
        k, _, v = term.partition("=")
        if labels.get(k.strip()) != v.strip():
            return False
    return True


@gcp("GET", KNATIVE + r"/revisions", "run.revisions.list")
def run_revision_list(req, ns):
    region = run_region(req)
    items = [r for (p, rg, _), r in STATE["run_revisions"].items()
             if p == ns and rg == region and label_selector_matches(req.query.get("labelSelector"), r["metadata"]["labels"])]
    items.sort(key=lambda r: r["metadata"]["creationTimestamp"], reverse=True)
    return 200, {"apiVersion": "serving.knative.dev/v1", "kind": "RevisionList", "items": items, "metadata": {}}


@gcp("GET", KNATIVE + r"/revisions/(?P<name>[^/]+)", "run.revisions.get")
def run_revision_get(req, ns, name):
    key = (ns, run_region(req), name)
    if key not in STATE["run_revisions"]:
        raise run_not_found("REVISION", name, run_region(req), ns)
    return 200, STATE["run_revisions"][key]


@gcp("DELETE", KNATIVE + r"/revisions/(?P<name>[^/]+)", "run.revisions.delete")
def run_revision_delete(req, ns, name):
    if STATE["run_revisions"].pop((ns, run_region(req), name), None) is None:
        raise run_not_found("REVISION", name, run_region(req), ns)
    return 200, {"apiVersion": "v1", "kind": "Status", "status": "Success", "details": {"name": name, "kind": "revisions"}}


@gcp("GET", KNATIVE + r"/configurations/(?P<name>[^/]+)", "run.configurations.get")
def run_configuration_get(req, ns, name):
    svc = STATE["run_services"].get((ns, run_region(req), name))
    if svc is None:
        raise run_not_found("CONFIGURATION", name, run_region(req), ns)
    return 200, {"apiVersion": "serving.knative.dev/v1", "kind": "Configuration", "metadata": svc["metadata"],
                 "spec": {"template": svc["spec"]["template"]},
                 "status": {k: svc["status"][k] for k in ("observedGeneration", "conditions",
                                                             "latestReadyRevisionName", "latestCreatedRevisionName")}}


# Jobs and their executions

@gcp("GET", RUNV1 + r"/jobs/(?P<name>[^/:]+)", "run.jobs.get")
def run_job_get(req, ns, name):
    key = (ns, run_region(req), name)
    if key not in STATE["run_jobs"]:
        raise run_not_found("JOB", name, run_region(req), ns)
    return 200, STATE["run_jobs"][key]


@gcp("GET", RUNV1 + r"/jobs", "run.jobs.list")
def run_job_list(req, ns):
    items = [j for (p, r, _), j in sorted(STATE["run_jobs"].items()) if p == ns and r == run_region(req)]
    return 200, {"apiVersion": "run.googleapis.com/v1", "kind": "JobsList", "items": items, "metadata": {}}


@gcp("POST", RUNV1 + r"/jobs", "run.jobs.create")
def run_job_create(req, ns):
    return run_job_write(req, ns, ((req.json or {}).get("metadata") or {}).get("name", ""), create=True)


@gcp("PUT", RUNV1 + r"/jobs/(?P<name>[^/:]+)", "run.jobs.replace")
def run_job_replace(req, ns, name):
    return run_job_write(req, ns, name, create=False)


def run_job_write(req, ns, name, create):
    region = run_region(req)
    key = (ns, region, name)
    old = STATE["run_jobs"].get(key)
    if create and old:
        raise ApiError(409, "ALREADY_EXISTS", "Resource '%s' already exists." % name)
    if not create and not old:
        raise run_not_found("JOB", name, region, ns)
    job = copy.deepcopy(req.json or {})
    md = job.setdefault("metadata", {})
    md.update(k8s_metadata(old, name, ns, "/apis/run.googleapis.com/v1/namespaces/%s/jobs" % project_number(ns)))
    md.setdefault("labels", {})["cloud.googleapis.com/location"] = region
    job["status"] = {"observedGeneration": md["generation"], "conditions": ready_conditions("Ready"),
                     "executionCount": (old or {}).get("status", {}).get("executionCount", 0)}
    if old and old["status"].get("latestCreatedExecution"):
        job["status"]["latestCreatedExecution"] = old["status"]["latestCreatedExecution"]
    STATE["run_jobs"][key] = job
    return 200, job


@gcp("DELETE", RUNV1 + r"/jobs/(?P<name>[^/:]+)", "run.jobs.delete")
def run_job_delete(req, ns, name):
    if STATE["run_jobs"].pop((ns, run_region(req), name), None) is None:
        raise run_not_found("JOB", name, run_region(req), ns)
    return 200, {"apiVersion": "v1", "kind": "Status", "status": "Success", "details": {"name": name, "kind": "jobs"}}


@gcp("POST", RUNV1 + r"/jobs/(?P<name>[^/:]+):run", "run.jobs.run")
def run_job_run(req, ns, name):
    region = run_region(req)
    job = STATE["run_jobs"].get((ns, region, name))
    if job is None:
        raise run_not_found("JOB", name, region, ns)
    failed = flag("check-fails")
    exec_name = "%s-%s" % (name, rand(5, string.ascii_lowercase))
    t = now_rfc3339()
    task_spec = copy.deepcopy(job["spec"]["template"]["spec"])
    completed = {"type": "Completed", "status": "False" if failed else "True", "lastTransitionTime": t}
    if failed:
        completed.update(reason="NonZeroExitCode",
                         message="Task %s-0 failed with message: The container exited with an error (exit code 1)."
                                 % exec_name)
    execution = {
        "apiVersion": "run.googleapis.com/v1", "kind": "Execution",
        "metadata": {"name": exec_name, "namespace": project_number(ns), "generation": 1, "uid": str(uuid.uuid4()),
                     "creationTimestamp": t, "resourceVersion": rand(12),
                     "labels": {"run.googleapis.com/job": name, "cloud.googleapis.com/location": region},
                     "annotations": dict(job["metadata"].get("annotations") or {}),
                     "selfLink": "/apis/run.googleapis.com/v1/namespaces/%s/executions/%s" % (project_number(ns), exec_name)},
        "spec": dict(task_spec, **{"overrides": (req.json or {}).get("overrides")} if (req.json or {}).get("overrides") else task_spec),
        "status": {"observedGeneration": 1, "startTime": t, "completionTime": t,
                   "conditions": [completed] + ready_conditions("ResourcesAvailable", "Started"),
                   ("failedCount" if failed else "succeededCount"): task_spec.get("taskCount", 1),
                   "logUri": "https://console.cloud.google.com/logs/viewer?project=%s" % ns}}
    STATE["run_executions"][(ns, region, exec_name)] = execution
    job["status"]["executionCount"] = job["status"].get("executionCount", 0) + 1
    job["status"]["latestCreatedExecution"] = {"name": exec_name, "creationTimestamp": t,
                                               "completionTimestamp": t,
                                               "completionStatus": "EXECUTION_FAILED" if failed else "EXECUTION_SUCCEEDED"}
    return 200, execution


@gcp("GET", RUNV1 + r"/executions/(?P<name>[^/:]+)", "run.executions.get")
def run_execution_get(req, ns, name):
    key = (ns, run_region(req), name)
    if key not in STATE["run_executions"]:
        raise run_not_found("EXECUTION", name, run_region(req), ns)
    return 200, STATE["run_executions"][key]


@gcp("GET", RUNV1 + r"/executions", "run.executions.list")
def run_execution_list(req, ns):
    items = [e for (p, r, _), e in STATE["run_executions"].items()
             if p == ns and r == run_region(req) and label_selector_matches(req.query.get("labelSelector"), e["metadata"]["labels"])]
    items.sort(key=lambda e: e["metadata"]["creationTimestamp"], reverse=True)
    return 200, {"apiVersion": "run.googleapis.com/v1", "kind": "ExecutionsList", "items": items, "metadata": {}}


@gcp("GET", RUNV1 + r"/tasks", "run.tasks.list")
def run_task_list(req, ns):
    items = []
    for (p, r, name), e in STATE["run_executions"].items():
        if p != ns or r != run_region(req):
            continue
        labels = dict(e["metadata"]["labels"], **{"run.googleapis.com/execution": name})
        if not label_selector_matches(req.query.get("labelSelector"), labels):
            continue
        ok = e["status"]["conditions"][0]["status"] == "True"
        items.append({"apiVersion": "run.googleapis.com/v1", "kind": "Task",
                      "metadata": {"name": name + "-task0", "namespace": e["metadata"]["namespace"], "labels": labels,
                                   "creationTimestamp": e["metadata"]["creationTimestamp"]},
                      "spec": {}, "status": {"index": 0, "conditions": [{"type": "Completed", "status": "True" if ok else "False"}],
                                             "completionTime": e["status"]["completionTime"],
                                             "lastAttemptResult": {"exitCode": 0 if ok else 1}}})
    return 200, {"apiVersion": "run.googleapis.com/v1", "kind": "TasksList", "items": items, "metadata": {}}


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/services", "run.services.list")
def run_service_list_global(req, project, location):
    # The global endpoint, as `gcloud run services list` without --region uses it (location "-").
    items = [s for (p, r, _), s in sorted(STATE["run_services"].items()) if p == project and location in ("-", r)]
    return 200, {"apiVersion": "serving.knative.dev/v1", "kind": "ServiceList", "items": items, "metadata": {}}


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/locations", "run.locations.list")
def run_locations(req, project):
    regions = ["europe-west1", "europe-west3", "us-central1", "us-east1"]
    return 200, {"locations": [{"name": "projects/%s/locations/%s" % (project, r), "locationId": r} for r in regions]}


# ---- Logging ----

@gcp("POST", r"/v2/entries:list", "logging.entries.list")
def logging_list(req):
    # Lines of <state-dir>/logs become entries, newest first, so a test can give a service a log.
    lines = state_file_lines("logs")
    body = req.json or {}
    m = re.search(r"resource\.labels\.service_name\s*=\s*\"?([\w-]+)", body.get("filter", ""))
    service = m.group(1) if m else ""
    t = now_rfc3339()
    entries = [{"logName": "projects/p/logs/run.googleapis.com%2Fstdout", "textPayload": l, "timestamp": t,
                "receiveTimestamp": t, "insertId": rand(10), "severity": "DEFAULT",
                "resource": {"type": "cloud_run_revision", "labels": {"service_name": service}}}
               for l in reversed(lines)]
    return 200, {"entries": entries[: int(body.get("pageSize") or 1000)]}


@gcp("POST", r"/v2/projects/(?P<project>[^/]+)/metrics", "logging.metrics.create")
def logging_metric_create(req, project):
    metric = dict(req.json or {})
    key = "projects/%s/metrics/%s" % (project, metric.get("name", ""))
    if key in STATE["log_metrics"]:
        raise ApiError(409, "ALREADY_EXISTS", "Metric %s already exists" % metric.get("name"))
    metric.update(createTime=now_rfc3339(), updateTime=now_rfc3339())
    STATE["log_metrics"][key] = metric
    return 200, metric


@gcp("GET", r"/v2/projects/(?P<project>[^/]+)/metrics/(?P<name>[^/]+)", "logging.metrics.get")
def logging_metric_get(req, project, name):
    key = "projects/%s/metrics/%s" % (project, name)
    if key not in STATE["log_metrics"]:
        raise not_found("Metric %s does not exist" % name)
    return 200, STATE["log_metrics"][key]


@gcp("PUT", r"/v2/projects/(?P<project>[^/]+)/metrics/(?P<name>[^/]+)", "logging.metrics.update")
def logging_metric_update(req, project, name):
    key = "projects/%s/metrics/%s" % (project, name)
    if key not in STATE["log_metrics"]:
        raise not_found("Metric %s does not exist" % name)
    STATE["log_metrics"][key] = dict(req.json or {}, name=name, updateTime=now_rfc3339())
    return 200, STATE["log_metrics"][key]


@gcp("GET", r"/v2/projects/(?P<project>[^/]+)/metrics", "logging.metrics.list")
def logging_metric_list(req, project):
    prefix = "projects/%s/metrics/" % project
    return 200, {"metrics": [m for k, m in sorted(STATE["log_metrics"].items()) if k.startswith(prefix)]}


# ---- Monitoring (dashboards, alert policies) ----

@gcp("POST", r"/v(?P<v>\d)/projects/(?P<project>[^/]+)/(?P<kind>dashboards|alertPolicies|notificationChannels)",
     "monitoring.create")
def monitoring_create(req, v, project, kind):
    obj = dict(req.json or {})
    obj["name"] = "projects/%s/%s/%s" % (project_number(project), kind, rand(16, string.digits))
    obj["etag"] = rand(16)
    STATE["monitoring"][obj["name"]] = obj
    return 200, obj


MONITORING_ONE = r"/v(?P<v>\d)/projects/(?P<project>[^/]+)/(?P<kind>dashboards|alertPolicies|notificationChannels)/(?P<rid>[^/:]+)"


def monitoring_find(project, kind, rid):
    name = "projects/%s/%s/%s" % (project_number(project), kind, rid)
    if name not in STATE["monitoring"]:
        raise not_found("Requested entity was not found.")
    return name


@gcp("GET", MONITORING_ONE, "monitoring.get")
def monitoring_get(req, v, project, kind, rid):
    return 200, STATE["monitoring"][monitoring_find(project, kind, rid)]


@gcp("PATCH", MONITORING_ONE, "monitoring.update")
def monitoring_update(req, v, project, kind, rid):
    name = monitoring_find(project, kind, rid)
    body = dict(req.json or {})
    # Like the real API: an update read from an older version (another etag) is refused.
    if body.get("etag") and body["etag"] != STATE["monitoring"][name].get("etag"):
        raise ApiError(409, "ABORTED", "The resource has been modified since it was read (etag mismatch).")
    body.update(name=name, etag=rand(16))
    STATE["monitoring"][name] = body
    return 200, body


@gcp("DELETE", MONITORING_ONE, "monitoring.delete")
def monitoring_delete(req, v, project, kind, rid):
    del STATE["monitoring"][monitoring_find(project, kind, rid)]
    return 200, {}


@gcp("GET", r"/v(?P<v>\d)/projects/(?P<project>[^/]+)/(?P<kind>dashboards|alertPolicies|notificationChannels)",
     "monitoring.list")
def monitoring_list(req, v, project, kind):
    prefix = "projects/%s/%s/" % (project_number(project), kind)
    return 200, {kind: [o for n, o in sorted(STATE["monitoring"].items()) if n.startswith(prefix)]}


# ---- Cloud Storage (what `gcloud builds submit` needs: a bucket and its source upload) ----

@gcp("GET", r"/v1/b/(?P<bucket>[^/]+)", "storage.buckets.get")
def gcs_bucket_get(req, bucket):
    if bucket not in STATE["gcs_buckets"]:
        raise not_found("The specified bucket does not exist.")
    return 200, STATE["gcs_buckets"][bucket]


@gcp("GET", r"/v1/b", "storage.buckets.list")
def gcs_bucket_list(req):
    number = project_number(req.query.get("project", ""))
    prefix = req.query.get("prefix", "")
    return 200, {"kind": "storage#buckets", "items": [b for n, b in sorted(STATE["gcs_buckets"].items())
                                                      if b["projectNumber"] == number and n.startswith(prefix)]}


@gcp("POST", r"/v1/b", "storage.buckets.insert")
def gcs_bucket_insert(req):
    body = req.json or {}
    name = body.get("name", "")
    if name in STATE["gcs_buckets"]:
        raise ApiError(409, "ALREADY_EXISTS", "Your previous request to create the named bucket succeeded and you already own it.")
    project = req.query.get("project", "")
    STATE["gcs_buckets"][name] = dict(body, kind="storage#bucket", id=name, name=name, timeCreated=now_rfc3339(),
                                      projectNumber=project_number(project) if project else "0",
                                      location=body.get("location", "US"), storageClass="STANDARD",
                                      selfLink="https://www.googleapis.com/storage/v1/b/" + name)
    return 200, STATE["gcs_buckets"][name]


@gcp("POST", r"/upload/v1/b/(?P<bucket>[^/]+)/o", "storage.objects.insert")
def gcs_object_insert(req, bucket):
    if bucket not in STATE["gcs_buckets"]:
        raise not_found("The specified bucket does not exist.")
    meta = req.multipart[0] if req.multipart and isinstance(req.multipart[0], dict) else {}
    name = req.query.get("name") or meta.get("name", "")
    size = len(req.multipart[-1]) if req.multipart and isinstance(req.multipart[-1], bytes) else len(req.raw)
    obj = {"kind": "storage#object", "bucket": bucket, "name": name, "id": "%s/%s/1" % (bucket, name),
           "size": str(size), "generation": "1", "timeCreated": now_rfc3339(), "updated": now_rfc3339(),
           "contentType": "application/octet-stream", "md5Hash": base64.b64encode(hashlib.md5(req.raw).digest()).decode(),
           "crc32c": "AAAAAA=="}
    STATE["gcs_objects"][(bucket, name)] = obj
    return 200, obj


@gcp("GET", r"/v1/b/(?P<bucket>[^/]+)/o/(?P<name>.+)", "storage.objects.get")
def gcs_object_get(req, bucket, name):
    obj = STATE["gcs_objects"].get((bucket, name))
    if obj is None:
        raise not_found("No such object: %s/%s" % (bucket, name))
    if req.query.get("alt") == "media":
        data = obj.get("data", "").encode()
        m = re.match(r"bytes=(\d+)-(\d*)", req.headers.get("Range", ""))
        if m:
            data = data[int(m.group(1)): int(m.group(2)) + 1 if m.group(2) else None]
            if not data:
                raise ApiError(416, "RANGE_NOT_SATISFIABLE", "The requested range cannot be satisfied.")
            return 206, data
        return 200, data
    return 200, {k: v for k, v in obj.items() if k != "data"}


@gcp("GET", r"/v1/b/(?P<bucket>[^/]+)/o", "storage.objects.list")
def gcs_object_list(req, bucket):
    prefix = req.query.get("prefix", "")
    return 200, {"kind": "storage#objects",
                 "items": [o for (b, n), o in sorted(STATE["gcs_objects"].items()) if b == bucket and n.startswith(prefix)]}


# ---- Cloud Build (a build succeeds at once; its image then exists) ----

@gcp("POST", r"/v1/projects/(?P<project>[^/]+)(/locations/(?P<location>[^/]+))?/builds", "cloudbuild.builds.create")
def build_create(req, project, location=None):
    location = location or "global"
    build_id = str(uuid.uuid4())
    failed = flag("build-fails")
    t = now_rfc3339()
    build = copy.deepcopy(req.json or {})
    build.update(id=build_id, projectId=project, status="FAILURE" if failed else "SUCCESS", createTime=t, startTime=t,
                 finishTime=t, name="projects/%s/locations/%s/builds/%s" % (project_number(project), location, build_id),
                 logsBucket=build.get("logsBucket") or "gs://%s.cloudbuild-logs.googleusercontent.com" % project_number(project),
                 logUrl="https://console.cloud.google.com/cloud-build/builds;region=%s/%s?project=%s"
                        % (location, build_id, project_number(project)))
    # gcloud would tail the log from https://storage.googleapis.com/..., a fixed address no
    # setting points elsewhere: the build says it keeps no log, so gcloud only polls it.
    build.setdefault("options", {})["logging"] = "NONE"
    if failed:
        build["statusDetail"] = 'Build step 0 "gcr.io/cloud-builders/docker" failed: step exited with non-zero status: 1'
    else:
        build["results"] = {"images": [{"name": image, "digest": "sha256:" + hashlib.sha256(image.encode()).hexdigest()}
                                       for image in build.get("images", [])]}
        STATE["built_images"].update(build.get("images", []))
    STATE["builds"][build_id] = build
    name = "projects/%s/locations/%s/operations/%s" % (project_number(project), location, rand(32, "0123456789abcdef"))
    op = done_operation(name, metadata={"@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
                                        "build": build})
    op["response"] = dict(build, **{"@type": "type.googleapis.com/google.devtools.cloudbuild.v1.Build"})
    return 200, op


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)(/locations/(?P<location>[^/]+))?/builds/(?P<build_id>[^/:]+)", "cloudbuild.builds.get")
def build_get(req, project, build_id, location=None):
    if build_id not in STATE["builds"]:
        raise not_found("Requested entity was not found.")
    return 200, STATE["builds"][build_id]


# ---- Compute (operations finish at once) ----

def compute_base(req):
    return "http://%s/compute/v1/" % req.host


def compute_op(req, project, scope, target, op_type):
    name = "operation-%d-%s" % (int(time.time() * 1000), rand(12))
    base = compute_base(req)
    t = now_rfc3339()
    op = {"kind": "compute#operation", "id": str(random.randrange(10**18, 10**19)), "name": name,
          "operationType": op_type, "targetLink": base + target, "targetId": str(random.randrange(10**18, 10**19)),
          "status": "DONE", "progress": 100, "insertTime": t, "startTime": t, "endTime": t,
          "user": "standin@example.com", "selfLink": base + "projects/%s/%s/operations/%s" % (project, scope, name)}
    if scope.startswith("regions/"):
        op["region"] = base + "projects/%s/%s" % (project, scope)
    STATE["operations"]["compute:" + name] = op
    return op


@gcp("GET", r"/v1/projects/(?P<project>[^/]+)/(?P<scope>global|regions/[^/]+)/operations/(?P<name>[^/]+)",
     "compute.operations.get")
@gcp("POST", r"/v1/projects/(?P<project>[^/]+)/(?P<scope>global|regions/[^/]+)/operations/(?P<name>[^/]+)/wait",
     "compute.operations.wait")
def compute_op_get(req, project, scope, name):
    if "compute:" + name not in STATE["operations"]:
        raise not_found("The resource 'projects/%s/%s/operations/%s' was not found" % (project, scope, name))
    return 200, STATE["operations"]["compute:" + name]


COMPUTE_KINDS = {"networks": "compute#network", "subnetworks": "compute#subnetwork",
                 "routers": "compute#router", "addresses": "compute#address", "firewalls": "compute#firewall"}
SCOPED = r"/v1/projects/(?P<project>[^/]+)/(?P<scope>global|regions/[^/]+)/(?P<kind>%s)" % "|".join(COMPUTE_KINDS)


@gcp("GET", SCOPED + r"/(?P<name>[^/]+)", "compute.get")
def compute_get(req, project, scope, kind, name):
    path = "projects/%s/%s/%s/%s" % (project, scope, kind, name)
    if path not in STATE["compute"]:
        raise not_found("The resource '%s' was not found" % path)
    return 200, compute_public(req, STATE["compute"][path])


@gcp("GET", SCOPED, "compute.list")
def compute_list(req, project, scope, kind):
    prefix = "projects/%s/%s/%s/" % (project, scope, kind)
    return 200, {"kind": COMPUTE_KINDS[kind] + "List",
                 "items": [compute_public(req, r) for p, r in sorted(STATE["compute"].items()) if p.startswith(prefix)]}


def compute_public(req, res):
    """Links are stored relative and given out with the base the caller used."""
    base = compute_base(req)

    def expand(v, key=""):
        if isinstance(v, dict):
            return {k: expand(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [expand(x, key) for x in v]
        if isinstance(v, str) and v.startswith("projects/") and key not in ("name",):
            return base + v
        return v
    return expand(res)


def compute_ref(project, scope_kind, ref, default_scope):
    """A reference in a request (a URL or a bare name) as a relative path."""
    if not ref:
        return ref
    if "projects/" in ref:
        return "projects/" + ref.split("projects/", 1)[1]
    return "projects/%s/%s/%s" % (project, default_scope, scope_kind) + "/" + ref


@gcp("POST", SCOPED, "compute.insert")
def compute_insert(req, project, scope, kind):
    body = copy.deepcopy(req.json or {})
    name = body.get("name", "")
    path = "projects/%s/%s/%s/%s" % (project, scope, kind, name)
    if path in STATE["compute"]:
        raise ApiError(409, "ALREADY_EXISTS", "The resource '%s' already exists" % path)
    region = scope.split("/", 1)[1] if scope.startswith("regions/") else None
    res = dict(body, kind=COMPUTE_KINDS[kind], id=str(random.randrange(10**18, 10**19)),
               creationTimestamp=now_rfc3339(), selfLink=path)
    if region:
        res["region"] = "projects/%s/regions/%s" % (project, region)
    if "network" in res:
        net = compute_ref(project, "networks", res["network"], "global")
        if net not in STATE["compute"]:
            raise not_found("The resource '%s' was not found" % net)
        res["network"] = net
    if kind == "networks":
        res.setdefault("subnetworks", [])
    elif kind == "subnetworks":
        cidr = res.get("ipCidrRange", "10.0.0.0/28")
        res["gatewayAddress"] = cidr.split("/")[0].rsplit(".", 1)[0] + ".1"
        res.setdefault("privateIpGoogleAccess", False)
        res["fingerprint"] = rand(12)
        STATE["compute"][res["network"]]["subnetworks"].append(path)
    elif kind == "addresses":
        res.setdefault("address", "203.0.113.%d" % (10 + len(STATE["compute"]) % 200))
        res.setdefault("addressType", "EXTERNAL")
        res.setdefault("networkTier", "PREMIUM")
        res["status"] = "RESERVED"
    elif kind == "routers":
        res.setdefault("nats", [])
    STATE["compute"][path] = res
    return 200, compute_public(req, compute_op(req, project, scope, path, "insert"))


@gcp("PATCH", SCOPED + r"/(?P<name>[^/]+)", "compute.patch")
@gcp("PUT", SCOPED + r"/(?P<name>[^/]+)", "compute.update")
def compute_patch(req, project, scope, kind, name):
    path = "projects/%s/%s/%s/%s" % (project, scope, kind, name)
    if path not in STATE["compute"]:
        raise not_found("The resource '%s' was not found" % path)
    res = STATE["compute"][path]
    for k, v in (req.json or {}).items():
        if k not in ("selfLink", "id", "kind", "creationTimestamp", "region", "network"):
            res[k] = copy.deepcopy(v)
    return 200, compute_public(req, compute_op(req, project, scope, path, "patch" if req.method == "PATCH" else "update"))


@gcp("DELETE", SCOPED + r"/(?P<name>[^/]+)", "compute.delete")
def compute_delete(req, project, scope, kind, name):
    path = "projects/%s/%s/%s/%s" % (project, scope, kind, name)
    if STATE["compute"].pop(path, None) is None:
        raise not_found("The resource '%s' was not found" % path)
    return 200, compute_public(req, compute_op(req, project, scope, path, "delete"))


# ---------------------------------------------------------------------------------------------
# AWS
# ---------------------------------------------------------------------------------------------

AWS_OPS = {}  # (service, operation) -> function(req, params, region) -> dict


def aws(service, *operations):
    def register(fn):
        for op in operations:
            AWS_OPS[(service, op)] = fn
        return fn
    return register


# The signing name in the credential scope, as the record names the service.
AWS_SERVICE_NAMES = {"monitoring": "cloudwatch"}


def aws_dispatch(req):
    service = AWS_SERVICE_NAMES.get(req.aws_service, req.aws_service)
    req.service = service
    region = req.aws_region or "us-east-1"
    if req.target:
        operation = req.target.split(".")[-1]
    else:
        operation = (req.form or {}).get("Action", "")
    req.op = "%s.%s" % (service, operation)
    protocol = "json" if req.headers.get("X-Amz-Target") else ("ec2" if service == "ec2" else "query")
    fn = AWS_OPS.get((service, operation))
    try:
        if fn is None:
            req.op = "UNHANDLED"
            raise ApiError(400, "UnknownOperationException",
                           "cloud stand-in has no handler for %s %s; add one in tests/deploy/standin/cloud.py"
                           % (service, operation or req.method + " " + req.path))
        params = req.json if protocol == "json" else nest_form(req.form or {})
        result = fn(req, params or {}, region)
        return aws_success(protocol, service, operation, result, req)
    except ApiError as e:
        return aws_error(protocol, e, req)


def aws_success(protocol, service, operation, result, req):
    rid = str(uuid.uuid4())
    if protocol == "json":
        return 200, json.dumps(result, default=str), req.ctype or "application/x-amz-json-1.1", {"x-amzn-RequestId": rid}
    if protocol == "ec2":
        xml = '<?xml version="1.0" encoding="UTF-8"?>\n<%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">' \
              "<requestId>%s</requestId>%s</%sResponse>" % (operation, rid, to_xml(result, "item"), operation)
        return 200, xml, "text/xml;charset=UTF-8", {}
    ns = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/", "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
          "sns": "http://sns.amazonaws.com/doc/2010-03-31/"}
    xml = '<%sResponse xmlns="%s"><%sResult>%s</%sResult><ResponseMetadata><RequestId>%s</RequestId>' \
          "</ResponseMetadata></%sResponse>" % (operation, ns.get(service, ""), operation,
                                               to_xml(result, "member"), operation, rid, operation)
    return 200, xml, "text/xml", {"x-amzn-RequestId": rid}


def aws_error(protocol, e, req):
    rid = str(uuid.uuid4())
    if protocol == "json":
        extra = {"x-amzn-RequestId": rid, "x-amzn-ErrorType": e.code}
        if req.headers.get("x-amzn-query-mode"):  # CloudWatch speaks JSON but keeps query error codes
            extra["x-amzn-query-error"] = "%s;Sender" % e.code
        return e.status, json.dumps({"__type": e.code, "message": e.message}), req.ctype or "application/x-amz-json-1.1", extra
    if protocol == "ec2":
        xml = '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code><Message>%s</Message>' \
              "</Error></Errors><RequestID>%s</RequestID></Response>" % (escape(e.code), escape(e.message), rid)
        return e.status, xml, "text/xml;charset=UTF-8", {}
    xml = "<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>" \
          "<RequestId>%s</RequestId></ErrorResponse>" % (escape(e.code), escape(e.message), rid)
    return e.status, xml, "text/xml", {}


class XmlMap(dict):
    """A map in a query-protocol answer: <entry><key>K</key><value>V</value></entry> items."""


def to_xml(value, list_tag):
    if isinstance(value, XmlMap):
        return "".join("<entry><key>%s</key><value>%s</value></entry>" % (escape(k), to_xml(v, list_tag))
                       for k, v in value.items())
    if isinstance(value, dict):
        return "".join("<%s>%s</%s>" % (k, to_xml(v, list_tag), k) for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join("<%s>%s</%s>" % (list_tag, to_xml(v, list_tag), list_tag) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def nest_form(form):
    """Query-protocol fields (Filter.1.Value.1, Tags.member.2.Key) as nested dicts and lists."""
    root = {}
    for key, value in form.items():
        parts = [p for p in key.split(".") if p != "member"]
        node = root
        for i, part in enumerate(parts):
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node.setdefault(part, {})

    def lists(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [lists(node[k]) for k in sorted(node, key=int)]
        return {k: lists(v) for k, v in node.items()}
    return lists(root)


def aws_time():
    return time.time()


def iso_time():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def validation(field, value, constraint):
    # The wording of the real services' input validation (which the CLI does not repeat).
    return "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: %s" % (value, field, constraint)


# ---- STS ----

@aws("sts", "GetCallerIdentity")
def sts_identity(req, p, region):
    return {"UserId": "AIDASTANDIN0000000000", "Account": ACCOUNT, "Arn": "arn:aws:iam::%s:user/standin" % ACCOUNT}


# ---- ECR ----

@aws("ecr", "DescribeRepositories")
def ecr_describe(req, p, region):
    names = p.get("repositoryNames")
    if names:
        for n in names:
            if n not in STATE["ecr_repositories"]:
                raise ApiError(400, "RepositoryNotFoundException",
                               "The repository with name '%s' does not exist in the registry with id '%s'" % (n, ACCOUNT))
        return {"repositories": [STATE["ecr_repositories"][n] for n in names]}
    return {"repositories": list(STATE["ecr_repositories"].values())}


@aws("ecr", "CreateRepository")
def ecr_create(req, p, region):
    name = p.get("repositoryName", "")
    if name in STATE["ecr_repositories"]:
        raise ApiError(400, "RepositoryAlreadyExistsException",
                       "The repository with name '%s' already exists in the registry with id '%s'" % (name, ACCOUNT))
    repo = {"repositoryArn": "arn:aws:ecr:%s:%s:repository/%s" % (region, ACCOUNT, name), "registryId": ACCOUNT,
            "repositoryName": name, "repositoryUri": "%s.dkr.ecr.%s.amazonaws.com/%s" % (ACCOUNT, region, name),
            "createdAt": aws_time(), "imageTagMutability": p.get("imageTagMutability", "MUTABLE"),
            "imageScanningConfiguration": p.get("imageScanningConfiguration", {"scanOnPush": False}),
            "encryptionConfiguration": {"encryptionType": "AES256"}}
    STATE["ecr_repositories"][name] = repo
    return {"repository": repo}


@aws("ecr", "DeleteRepository")
def ecr_delete(req, p, region):
    repo = STATE["ecr_repositories"].pop(p.get("repositoryName", ""), None)
    if repo is None:
        raise ApiError(400, "RepositoryNotFoundException", "The repository with name '%s' does not exist in the "
                       "registry with id '%s'" % (p.get("repositoryName"), ACCOUNT))
    return {"repository": repo}


@aws("ecr", "GetAuthorizationToken")
def ecr_token(req, p, region):
    return {"authorizationData": [{"authorizationToken": base64.b64encode(b"AWS:standin-ecr-password").decode(),
                                   "expiresAt": aws_time() + 43200,
                                   "proxyEndpoint": "https://%s.dkr.ecr.%s.amazonaws.com" % (ACCOUNT, region)}]}


@aws("ecr", "DescribeImages")
def ecr_images(req, p, region):
    name = p.get("repositoryName", "")
    if name not in STATE["ecr_repositories"]:
        raise ApiError(400, "RepositoryNotFoundException", "The repository with name '%s' does not exist in the "
                       "registry with id '%s'" % (name, ACCOUNT))
    # Nothing is pushed through the stand-in: <state-dir>/images lists the images that exist.
    uri = STATE["ecr_repositories"][name]["repositoryUri"]
    tags = [line.strip().split(":")[-1] for line in state_file_lines("images") if line.strip().startswith(uri + ":")]
    details = [{"registryId": ACCOUNT, "repositoryName": name, "imageTags": [t], "imagePushedAt": aws_time(),
                "imageDigest": "sha256:" + hashlib.sha256((uri + ":" + t).encode()).hexdigest(), "imageSizeInBytes": 10485760}
               for t in tags]
    for wanted in p.get("imageIds") or []:
        if wanted.get("imageTag") and wanted["imageTag"] not in tags:
            raise ApiError(400, "ImageNotFoundException", "The image with imageId {imageDigest:'null', imageTag:'%s'} "
                           "does not exist within the repository with name '%s' in the registry with id '%s'"
                           % (wanted["imageTag"], name, ACCOUNT))
    if p.get("imageIds"):
        details = [d for d in details if d["imageTags"][0] in [w.get("imageTag") for w in p["imageIds"]]]
    return {"imageDetails": details}


# ---- IAM ----

def iam_role_out(role):
    return {k: v for k, v in role.items() if k not in ("attached", "inline")}


def iam_role(name):
    if name not in STATE["iam_roles"]:
        raise ApiError(404, "NoSuchEntity", "The role with name %s cannot be found." % name)
    return STATE["iam_roles"][name]


@aws("iam", "GetRole")
def iam_get_role(req, p, region):
    return {"Role": iam_role_out(iam_role(p.get("RoleName", "")))}


@aws("iam", "CreateRole")
def iam_create_role(req, p, region):
    name = p.get("RoleName", "")
    if len(name) > 64:
        raise ApiError(400, "ValidationError", validation("roleName", name, "Member must have length less than or equal to 64"))
    if not re.fullmatch(r"[\w+=,.@-]+", name):
        raise ApiError(400, "ValidationError", validation("roleName", name, "Member must satisfy regular expression pattern: [\\w+=,.@-]+"))
    if name in STATE["iam_roles"]:
        raise ApiError(409, "EntityAlreadyExists", "Role with name %s already exists." % name)
    path = p.get("Path", "/")
    role = {"Path": path, "RoleName": name, "RoleId": "AROA" + rand(17, string.ascii_uppercase + string.digits),
            "Arn": "arn:aws:iam::%s:role%s%s" % (ACCOUNT, path, name), "CreateDate": iso_time(),
            "AssumeRolePolicyDocument": urllib.parse.quote(p.get("AssumeRolePolicyDocument", "")),
            "MaxSessionDuration": 3600, "attached": [], "inline": {}}
    if p.get("Description"):
        role["Description"] = p["Description"]
    STATE["iam_roles"][name] = role
    return {"Role": iam_role_out(role)}


@aws("iam", "AttachRolePolicy")
def iam_attach(req, p, region):
    role = iam_role(p.get("RoleName", ""))
    if p.get("PolicyArn") not in role["attached"]:
        role["attached"].append(p.get("PolicyArn"))
    return {}


@aws("iam", "ListAttachedRolePolicies")
def iam_list_attached(req, p, region):
    role = iam_role(p.get("RoleName", ""))
    return {"AttachedPolicies": [{"PolicyName": a.split("/")[-1], "PolicyArn": a} for a in role["attached"]],
            "IsTruncated": False}


@aws("iam", "PutRolePolicy")
def iam_put_policy(req, p, region):
    iam_role(p.get("RoleName", ""))["inline"][p.get("PolicyName", "")] = p.get("PolicyDocument", "")
    return {}


@aws("iam", "GetRolePolicy")
def iam_get_policy(req, p, region):
    role = iam_role(p.get("RoleName", ""))
    name = p.get("PolicyName", "")
    if name not in role["inline"]:
        raise ApiError(404, "NoSuchEntity", "The role policy with name %s cannot be found." % name)
    return {"RoleName": role["RoleName"], "PolicyName": name, "PolicyDocument": urllib.parse.quote(role["inline"][name])}


@aws("iam", "ListRolePolicies")
def iam_list_policies(req, p, region):
    return {"PolicyNames": sorted(iam_role(p.get("RoleName", ""))["inline"]), "IsTruncated": False}


# ---- Secrets Manager ----

def sm_find(secret_id):
    for s in STATE["sm_secrets"].values():
        if secret_id in (s["Name"], s["ARN"]) or (secret_id.startswith("arn:") and s["ARN"].startswith(secret_id + "-")):
            return s
    raise ApiError(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")


def sm_out(s):
    return {"ARN": s["ARN"], "Name": s["Name"], "CreatedDate": s["CreatedDate"], "LastChangedDate": s["LastChangedDate"],
            "VersionIdsToStages": {v["VersionId"]: v["VersionStages"] for v in s["versions"] if v["VersionStages"]},
            **({"Description": s["Description"]} if s.get("Description") else {})}


def sm_add_version(s, p):
    vid = p.get("ClientRequestToken") or str(uuid.uuid4())
    for v in s["versions"]:
        if "AWSCURRENT" in v["VersionStages"]:
            v["VersionStages"] = ["AWSPREVIOUS"]
        elif "AWSPREVIOUS" in v["VersionStages"]:
            v["VersionStages"] = []
    s["versions"].append({"VersionId": vid, "VersionStages": ["AWSCURRENT"], "SecretString": p.get("SecretString"),
                          "SecretBinary": p.get("SecretBinary"), "CreatedDate": aws_time()})
    s["LastChangedDate"] = aws_time()
    return vid


@aws("secretsmanager", "DescribeSecret")
def sm_describe(req, p, region):
    return sm_out(sm_find(p.get("SecretId", "")))


@aws("secretsmanager", "CreateSecret")
def sm_create_secret(req, p, region):
    name = p.get("Name", "")
    if name in STATE["sm_secrets"]:
        raise ApiError(400, "ResourceExistsException", "The operation failed because the secret %s already exists." % name)
    # The real ARN ends in a hyphen and six random characters.
    s = {"Name": name, "ARN": "arn:aws:secretsmanager:%s:%s:secret:%s-%s" % (
        region, ACCOUNT, name, rand(6, string.ascii_letters + string.digits)),
         "CreatedDate": aws_time(), "LastChangedDate": aws_time(), "versions": [], "Description": p.get("Description")}
    STATE["sm_secrets"][name] = s
    vid = sm_add_version(s, p) if ("SecretString" in p or "SecretBinary" in p) else None
    out = {"ARN": s["ARN"], "Name": name}
    if vid:
        out["VersionId"] = vid
    return out


@aws("secretsmanager", "PutSecretValue")
def sm_put_value(req, p, region):
    s = sm_find(p.get("SecretId", ""))
    vid = sm_add_version(s, p)
    return {"ARN": s["ARN"], "Name": s["Name"], "VersionId": vid, "VersionStages": ["AWSCURRENT"]}


@aws("secretsmanager", "GetSecretValue")
def sm_get_value(req, p, region):
    s = sm_find(p.get("SecretId", ""))
    stage = p.get("VersionStage", "AWSCURRENT")
    for v in s["versions"]:
        if v["VersionId"] == p.get("VersionId") or (not p.get("VersionId") and stage in v["VersionStages"]):
            out = {"ARN": s["ARN"], "Name": s["Name"], "VersionId": v["VersionId"], "VersionStages": v["VersionStages"],
                   "CreatedDate": v["CreatedDate"]}
            out.update({k: v[k] for k in ("SecretString", "SecretBinary") if v.get(k) is not None})
            return out
    raise ApiError(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: %s" % stage)


@aws("secretsmanager", "DeleteSecret")
def sm_delete_secret(req, p, region):
    s = sm_find(p.get("SecretId", ""))
    del STATE["sm_secrets"][s["Name"]]
    return {"ARN": s["ARN"], "Name": s["Name"], "DeletionDate": aws_time()}


@aws("secretsmanager", "ListSecrets")
def sm_list(req, p, region):
    return {"SecretList": [sm_out(s) for s in STATE["sm_secrets"].values()]}


# ---- ECS: Express gateway services, their deployments and revisions, tasks ----

def ecs_cluster_arn(region, cluster):
    cluster = cluster or "default"
    return cluster if cluster.startswith("arn:") else "arn:aws:ecs:%s:%s:cluster/%s" % (region, ACCOUNT, cluster)


def ecs_register_td(region, family, container, cpu, memory, execution_role, task_role, extra=None):
    revision = 1 + sum(1 for k in STATE["ecs_task_definitions"] if k.split(":")[0] == family)
    td = {"taskDefinitionArn": "arn:aws:ecs:%s:%s:task-definition/%s:%d" % (region, ACCOUNT, family, revision),
          "family": family, "revision": revision, "status": "ACTIVE", "containerDefinitions": [container],
          "cpu": cpu, "memory": memory, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
          "registeredAt": aws_time()}
    if execution_role:
        td["executionRoleArn"] = execution_role
    if task_role:
        td["taskRoleArn"] = task_role
    td.update(extra or {})
    STATE["ecs_task_definitions"]["%s:%d" % (family, revision)] = td
    return td


def ecs_configuration(region, svc_name, cluster, cfg):
    """A new service revision (with its task definition) for an Express configuration."""
    pc = cfg.get("primaryContainer") or {}
    container = {"name": "Main", "image": pc.get("image"), "essential": True,
                 "portMappings": [{"containerPort": pc.get("containerPort", 80), "protocol": "tcp"}],
                 "environment": pc.get("environment", []), "secrets": pc.get("secrets", [])}
    if pc.get("command"):
        container["command"] = pc["command"]
    td = ecs_register_td(region, "%s-%s" % (cluster, svc_name), container, cfg.get("cpu", "256"), cfg.get("memory", "512"),
                         cfg.get("executionRoleArn"), cfg.get("taskRoleArn"))
    rev_arn = "arn:aws:ecs:%s:%s:service-revision/%s/%s/%s" % (region, ACCOUNT, cluster, svc_name, rand(19, string.digits))
    STATE["ecs_revisions"][rev_arn] = {
        "serviceRevisionArn": rev_arn, "serviceArn": "arn:aws:ecs:%s:%s:service/%s/%s" % (region, ACCOUNT, cluster, svc_name),
        "clusterArn": ecs_cluster_arn(region, cluster), "taskDefinition": td["taskDefinitionArn"],
        "launchType": "FARGATE", "platformVersion": "1.4.0", "platformFamily": "Linux",
        "networkConfiguration": {"awsvpcConfiguration": dict(
            subnets=(cfg.get("networkConfiguration") or {}).get("subnets", []),
            securityGroups=(cfg.get("networkConfiguration") or {}).get("securityGroups", []), assignPublicIp="DISABLED")},
        "containerImages": [{"containerName": "Main", "image": pc.get("image")}], "createdAt": aws_time()}
    conf = copy.deepcopy(cfg)
    conf.pop("serviceArn", None)
    conf.update(serviceRevisionArn=rev_arn, createdAt=aws_time())
    return conf


def ecs_deployment(region, svc, target_rev, source_rev, rolled_back):
    arn = "arn:aws:ecs:%s:%s:service-deployment/%s/%s/%s" % (region, ACCOUNT, svc["cluster"], svc["serviceName"],
                                                             rand(21, string.ascii_letters + string.digits))
    t = aws_time()
    dep = {"serviceDeploymentArn": arn, "serviceArn": svc["serviceArn"], "clusterArn": ecs_cluster_arn(region, svc["cluster"]),
           "createdAt": t, "startedAt": t, "finishedAt": t, "updatedAt": t,
           "targetServiceRevision": {"arn": target_rev, "requestedTaskCount": 1, "runningTaskCount": 0 if rolled_back else 1,
                                     "pendingTaskCount": 0},
           "sourceServiceRevisions": [{"arn": source_rev, "requestedTaskCount": 1, "runningTaskCount": 1,
                                       "pendingTaskCount": 0}] if source_rev else [],
           "status": "ROLLBACK_SUCCESSFUL" if rolled_back else "SUCCESSFUL",
           "deploymentConfiguration": {"strategy": "CANARY"}}
    if rolled_back:
        dep["statusReason"] = "Service deployment rolled back because the circuit breaker threshold was exceeded."
        dep["rollback"] = {"reason": "ECS deployment circuit breaker: tasks failed to start.", "startedAt": t,
                           "serviceRevisionArn": source_rev}
    STATE["ecs_deployments"][arn] = dep
    return arn


ECS_CONFIG_KEYS = ("executionRoleArn", "taskRoleArn", "healthCheckPath", "primaryContainer", "networkConfiguration",
                   "cpu", "memory", "scalingTarget")


def ecs_find(arn):
    svc = STATE["ecs_services"].get(arn)
    if svc is None:
        raise ApiError(400, "ResourceNotFoundException", "The specified service %s was not found." % arn)
    return svc


@aws("ecs", "CreateExpressGatewayService")
def ecs_create_express(req, p, region):
    name = p.get("serviceName") or "svc-" + rand(8)
    cluster = (p.get("cluster") or "default").split("/")[-1]
    arn = "arn:aws:ecs:%s:%s:service/%s/%s" % (region, ACCOUNT, cluster, name)
    if arn in STATE["ecs_services"] and STATE["ecs_services"][arn]["status"]["statusCode"] == "ACTIVE":
        raise ApiError(400, "InvalidParameterException", "Creation of service was not idempotent.")
    cfg = {k: copy.deepcopy(p[k]) for k in ECS_CONFIG_KEYS if k in p}
    cfg.setdefault("cpu", "1024")
    cfg.setdefault("memory", "2048")
    cfg.setdefault("healthCheckPath", "/ping")
    conf = ecs_configuration(region, name, cluster, cfg)
    endpoint = "%s-%s.ecs.%s.on.aws" % (name[:2], uuid.uuid4().hex, region)
    conf["ingressPaths"] = [{"accessType": "PUBLIC", "endpoint": endpoint}]
    t = aws_time()
    svc = {"cluster": cluster, "serviceName": name, "serviceArn": arn, "infrastructureRoleArn": p.get("infrastructureRoleArn"),
           "status": {"statusCode": "ACTIVE"}, "activeConfigurations": [conf], "tags": p.get("tags", []),
           "createdAt": t, "updatedAt": t}
    svc["currentDeployment"] = ecs_deployment(region, svc, conf["serviceRevisionArn"], None, False)
    STATE["ecs_services"][arn] = svc
    return {"service": svc}


@aws("ecs", "UpdateExpressGatewayService")
def ecs_update_express(req, p, region):
    svc = ecs_find(p.get("serviceArn", ""))
    if svc["status"]["statusCode"] != "ACTIVE":
        raise ApiError(400, "InvalidParameterException", "The service is not active.")
    old = svc["activeConfigurations"][0]
    cfg = {k: copy.deepcopy(old[k]) for k in ECS_CONFIG_KEYS if k in old}
    cfg.update({k: copy.deepcopy(p[k]) for k in ECS_CONFIG_KEYS if k in p})
    conf = ecs_configuration(region, svc["serviceName"], svc["cluster"], cfg)
    conf["ingressPaths"] = old["ingressPaths"]
    rolled_back = flag("rollback")
    svc["currentDeployment"] = ecs_deployment(region, svc, conf["serviceRevisionArn"], old["serviceRevisionArn"], rolled_back)
    if not rolled_back:
        svc["activeConfigurations"] = [conf]
    svc["updatedAt"] = aws_time()
    return {"service": {"serviceArn": svc["serviceArn"], "cluster": svc["cluster"], "serviceName": svc["serviceName"],
                        "status": svc["status"], "targetConfiguration": conf, "createdAt": svc["createdAt"],
                        "updatedAt": svc["updatedAt"]}}


@aws("ecs", "DescribeExpressGatewayService")
def ecs_describe_express(req, p, region):
    return {"service": ecs_find(p.get("serviceArn", ""))}


@aws("ecs", "DeleteExpressGatewayService")
def ecs_delete_express(req, p, region):
    svc = ecs_find(p.get("serviceArn", ""))
    svc["status"] = {"statusCode": "INACTIVE"}  # deleted services stay describable for a while
    svc["updatedAt"] = aws_time()
    return {"service": svc}


@aws("ecs", "DescribeServiceDeployments")
def ecs_describe_deployments(req, p, region):
    found, failures = [], []
    for arn in p.get("serviceDeploymentArns", []):
        if arn in STATE["ecs_deployments"]:
            found.append(STATE["ecs_deployments"][arn])
        else:
            failures.append({"arn": arn, "reason": "MISSING"})
    return {"serviceDeployments": found, "failures": failures}


@aws("ecs", "ListServiceDeployments")
def ecs_list_deployments(req, p, region):
    svc_name = p.get("service", "").split("/")[-1]
    deps = [d for d in STATE["ecs_deployments"].values() if d["serviceArn"].split("/")[-1] == svc_name]
    deps.sort(key=lambda d: d["createdAt"], reverse=True)
    return {"serviceDeployments": [{k: d[k] for k in ("serviceDeploymentArn", "serviceArn", "clusterArn", "startedAt",
                                                       "createdAt", "finishedAt", "status")}
                                   | {"targetServiceRevisionArn": d["targetServiceRevision"]["arn"]} for d in deps]}


@aws("ecs", "DescribeServiceRevisions")
def ecs_describe_revisions(req, p, region):
    found, failures = [], []
    for arn in p.get("serviceRevisionArns", []):
        (found.append(STATE["ecs_revisions"][arn]) if arn in STATE["ecs_revisions"]
         else failures.append({"arn": arn, "reason": "MISSING"}))
    return {"serviceRevisions": found, "failures": failures}


@aws("ecs", "DescribeServices")
def ecs_describe_services(req, p, region):
    cluster = (p.get("cluster") or "default").split("/")[-1]
    found, failures = [], []
    for s in p.get("services", []):
        arn = s if s.startswith("arn:") else "arn:aws:ecs:%s:%s:service/%s/%s" % (region, ACCOUNT, cluster, s)
        svc = STATE["ecs_services"].get(arn)
        if svc is None:
            failures.append({"arn": arn, "reason": "MISSING"})
            continue
        rev = STATE["ecs_revisions"][svc["activeConfigurations"][0]["serviceRevisionArn"]]
        found.append({"serviceArn": arn, "serviceName": svc["serviceName"], "clusterArn": ecs_cluster_arn(region, cluster),
                      "status": svc["status"]["statusCode"], "desiredCount": 1, "runningCount": 1, "pendingCount": 0,
                      "launchType": "FARGATE", "taskDefinition": rev["taskDefinition"],
                      "networkConfiguration": rev["networkConfiguration"], "createdAt": svc["createdAt"],
                      "deployments": [{"id": "ecs-svc/" + rand(19, string.digits), "status": "PRIMARY",
                                       "taskDefinition": rev["taskDefinition"], "desiredCount": 1, "runningCount": 1,
                                       "rolloutState": "COMPLETED"}]})
    return {"services": found, "failures": failures}


@aws("ecs", "RegisterTaskDefinition")
def ecs_register(req, p, region):
    defs = p.get("containerDefinitions") or [{}]
    td = ecs_register_td(region, p.get("family", ""), defs[0], p.get("cpu"), p.get("memory"),
                         p.get("executionRoleArn"), p.get("taskRoleArn"),
                         {k: p[k] for k in ("networkMode", "requiresCompatibilities") if k in p})
    td["containerDefinitions"] = defs
    return {"taskDefinition": td}


def ecs_td(ref):
    key = ref.split("task-definition/")[-1]
    if ":" not in key:
        revs = [k for k in STATE["ecs_task_definitions"] if k.split(":")[0] == key]
        key = max(revs, key=lambda k: int(k.split(":")[1])) if revs else key
    if key not in STATE["ecs_task_definitions"]:
        raise ApiError(400, "ClientException", "Unable to describe task definition.")
    return STATE["ecs_task_definitions"][key]


@aws("ecs", "DescribeTaskDefinition")
def ecs_describe_td(req, p, region):
    return {"taskDefinition": ecs_td(p.get("taskDefinition", ""))}


@aws("ecs", "RunTask")
def ecs_run_task(req, p, region):
    td = ecs_td(p.get("taskDefinition", ""))
    cluster = (p.get("cluster") or "default").split("/")[-1]
    failed = flag("check-fails")
    tasks = []
    for _ in range(int(p.get("count") or 1)):
        task_id = uuid.uuid4().hex
        arn = "arn:aws:ecs:%s:%s:task/%s/%s" % (region, ACCOUNT, cluster, task_id)
        t = aws_time()
        # The task has already run to its end: a waiter's first look finds it stopped.
        task = {"taskArn": arn, "clusterArn": ecs_cluster_arn(region, cluster), "taskDefinitionArn": td["taskDefinitionArn"],
                "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "launchType": p.get("launchType", "FARGATE"),
                "createdAt": t, "startedAt": t, "stoppingAt": t, "stoppedAt": t, "executionStoppedAt": t,
                "stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in task exited",
                "overrides": p.get("overrides", {}), "cpu": td.get("cpu"), "memory": td.get("memory"),
                "containers": [{"containerArn": "arn:aws:ecs:%s:%s:container/%s/%s/%s" % (region, ACCOUNT, cluster, task_id,
                                                                                     uuid.uuid4()),
                                "taskArn": arn, "name": c.get("name"), "image": c.get("image"),
                                "lastStatus": "STOPPED", "exitCode": 1 if failed else 0}
                               for c in td["containerDefinitions"]]}
        STATE["ecs_tasks"][arn] = task
        tasks.append(task)
    return {"tasks": tasks, "failures": []}


@aws("ecs", "DescribeTasks")
def ecs_describe_tasks(req, p, region):
    found, failures = [], []
    for ref in p.get("tasks", []):
        task = next((t for a, t in STATE["ecs_tasks"].items() if a == ref or a.endswith("/" + ref)), None)
        (found.append(task) if task else failures.append({"arn": ref, "reason": "MISSING"}))
    return {"tasks": found, "failures": failures}


# ---- App Runner ----

def apprunner_find(arn):
    svc = STATE["apprunner_services"].get(arn)
    if svc is None or svc["Status"] == "DELETED":
        raise ApiError(400, "ResourceNotFoundException", "Resource %s is not found" % arn)
    return svc


def apprunner_operation(svc, op_type, status):
    t = aws_time()
    op = {"Id": uuid.uuid4().hex, "Type": op_type, "Status": status, "TargetArn": svc["ServiceArn"],
          "StartedAt": t, "EndedAt": t, "UpdatedAt": t}
    STATE["apprunner_operations"].setdefault(svc["ServiceArn"], []).insert(0, op)
    return op["Id"]


def apprunner_scaling_summary(arn):
    for revisions in STATE["apprunner_scaling"].values():
        for c in revisions:
            if c["AutoScalingConfigurationArn"] == arn:
                return {k: c[k] for k in ("AutoScalingConfigurationArn", "AutoScalingConfigurationName",
                                          "AutoScalingConfigurationRevision", "Status", "CreatedAt", "IsDefault")}
    return {"AutoScalingConfigurationArn": arn, "AutoScalingConfigurationName": "DefaultConfiguration",
            "AutoScalingConfigurationRevision": 1, "Status": "ACTIVE", "IsDefault": True}


SERVICE_CONFIG_KEYS = ("SourceConfiguration", "InstanceConfiguration", "HealthCheckConfiguration", "NetworkConfiguration",
                       "ObservabilityConfiguration", "EncryptionConfiguration")


@aws("apprunner", "CreateService")
def apprunner_create(req, p, region):
    name = p.get("ServiceName", "")
    if len(name) > 40:
        raise ApiError(400, "ValidationException", validation("serviceName", name, "Member must have length less than or equal to 40"))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-_]{3,39}", name):
        raise ApiError(400, "ValidationException", validation(
            "serviceName", name, "Member must satisfy regular expression pattern: [A-Za-z0-9][A-Za-z0-9-_]{3,39}"))
    if any(s["ServiceName"] == name and s["Status"] != "DELETED" for s in STATE["apprunner_services"].values()):
        raise ApiError(400, "InvalidRequestException", "Service with the provided name already exists: %s" % name)
    sid = uuid.uuid4().hex
    arn = "arn:aws:apprunner:%s:%s:service/%s/%s" % (region, ACCOUNT, name, sid)
    t = aws_time()
    svc = {"ServiceName": name, "ServiceId": sid, "ServiceArn": arn,
           "ServiceUrl": "%s.%s.awsapprunner.com" % (rand(10), region), "CreatedAt": t, "UpdatedAt": t, "Status": "RUNNING"}
    svc.update({k: copy.deepcopy(p[k]) for k in SERVICE_CONFIG_KEYS if k in p})
    svc["AutoScalingConfigurationSummary"] = apprunner_scaling_summary(
        p.get("AutoScalingConfigurationArn") or "arn:aws:apprunner:%s:%s:autoscalingconfiguration/DefaultConfiguration/1/%s"
        % (region, ACCOUNT, "0" * 32))
    STATE["apprunner_services"][arn] = svc
    op_id = apprunner_operation(svc, "CREATE_SERVICE", "SUCCEEDED")
    return {"Service": svc, "OperationId": op_id}


@aws("apprunner", "UpdateService")
def apprunner_update(req, p, region):
    svc = apprunner_find(p.get("ServiceArn", ""))
    if flag("rollback"):
        # The new settings failed their health check: App Runner went back to the old ones.
        op_id = apprunner_operation(svc, "UPDATE_SERVICE", "ROLLBACK_SUCCEEDED")
    else:
        for k in SERVICE_CONFIG_KEYS:
            if k in p:
                svc[k] = copy.deepcopy(p[k])
        if p.get("AutoScalingConfigurationArn"):
            svc["AutoScalingConfigurationSummary"] = apprunner_scaling_summary(p["AutoScalingConfigurationArn"])
        svc["UpdatedAt"] = aws_time()
        op_id = apprunner_operation(svc, "UPDATE_SERVICE", "SUCCEEDED")
    return {"Service": svc, "OperationId": op_id}


@aws("apprunner", "StartDeployment")
def apprunner_start_deployment(req, p, region):
    svc = apprunner_find(p.get("ServiceArn", ""))
    return {"OperationId": apprunner_operation(svc, "START_DEPLOYMENT", "ROLLBACK_SUCCEEDED" if flag("rollback") else "SUCCEEDED")}


@aws("apprunner", "DescribeService")
def apprunner_describe(req, p, region):
    return {"Service": apprunner_find(p.get("ServiceArn", ""))}


@aws("apprunner", "DeleteService")
def apprunner_delete(req, p, region):
    svc = apprunner_find(p.get("ServiceArn", ""))
    svc["Status"] = "DELETED"
    svc["DeletedAt"] = aws_time()
    return {"Service": svc, "OperationId": apprunner_operation(svc, "DELETE_SERVICE", "SUCCEEDED")}


@aws("apprunner", "ListServices")
def apprunner_list(req, p, region):
    return {"ServiceSummaryList": [{k: s[k] for k in ("ServiceName", "ServiceId", "ServiceArn", "ServiceUrl", "CreatedAt",
                                                      "UpdatedAt", "Status")}
                                   for s in STATE["apprunner_services"].values() if s["Status"] != "DELETED"]}


@aws("apprunner", "ListOperations")
def apprunner_list_operations(req, p, region):
    apprunner_find(p.get("ServiceArn", ""))
    ops = STATE["apprunner_operations"].get(p.get("ServiceArn"), [])
    return {"OperationSummaryList": ops[: int(p.get("MaxResults") or 20)]}


@aws("apprunner", "CreateAutoScalingConfiguration")
def apprunner_create_scaling(req, p, region):
    name = p.get("AutoScalingConfigurationName", "")
    if len(name) > 32:
        raise ApiError(400, "ValidationException", validation(
            "autoScalingConfigurationName", name, "Member must have length less than or equal to 32"))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-_]{3,31}", name):
        raise ApiError(400, "ValidationException", validation(
            "autoScalingConfigurationName", name,
            "Member must satisfy regular expression pattern: [A-Za-z0-9][A-Za-z0-9\\-_]{3,31}"))
    revisions = STATE["apprunner_scaling"].setdefault(name, [])
    for c in revisions:
        c["Latest"] = False
    rev = len(revisions) + 1
    conf = {"AutoScalingConfigurationArn": "arn:aws:apprunner:%s:%s:autoscalingconfiguration/%s/%d/%s"
            % (region, ACCOUNT, name, rev, uuid.uuid4().hex),
            "AutoScalingConfigurationName": name, "AutoScalingConfigurationRevision": rev, "Latest": True,
            "Status": "ACTIVE", "MaxConcurrency": int(p.get("MaxConcurrency", 100)), "MinSize": int(p.get("MinSize", 1)),
            "MaxSize": int(p.get("MaxSize", 25)), "CreatedAt": aws_time(), "HasAssociatedService": False,
            "IsDefault": False}
    revisions.append(conf)
    return {"AutoScalingConfiguration": conf}


@aws("apprunner", "ListAutoScalingConfigurations")
def apprunner_list_scaling(req, p, region):
    name = p.get("AutoScalingConfigurationName")
    out = []
    for n, revisions in STATE["apprunner_scaling"].items():
        if name and n != name:
            continue
        for c in revisions:
            if p.get("LatestOnly") and not c["Latest"]:
                continue
            out.append({k: c[k] for k in ("AutoScalingConfigurationArn", "AutoScalingConfigurationName",
                                          "AutoScalingConfigurationRevision", "Status", "CreatedAt",
                                          "HasAssociatedService", "IsDefault")})
    return {"AutoScalingConfigurationSummaryList": out}


@aws("apprunner", "CreateVpcConnector")
def apprunner_create_connector(req, p, region):
    name = p.get("VpcConnectorName", "")
    if len(name) > 40 or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-_]{3,39}", name):
        raise ApiError(400, "ValidationException", validation(
            "vpcConnectorName", name, "Member must satisfy regular expression pattern: [A-Za-z0-9][A-Za-z0-9\\-_]{3,39}"
            if len(name) <= 40 else "Member must have length less than or equal to 40"))
    revisions = STATE["apprunner_connectors"].setdefault(name, [])
    if any(c["Status"] == "ACTIVE" for c in revisions):
        # "At this time, App Runner supports only one revision per name."
        raise ApiError(400, "InvalidRequestException",
                       "A VPC connector with the name %s already exists and is active." % name)
    rev = len(revisions) + 1
    connector = {"VpcConnectorName": name, "VpcConnectorRevision": rev, "Status": "ACTIVE",
                 "VpcConnectorArn": "arn:aws:apprunner:%s:%s:vpcconnector/%s/%d/%s" % (region, ACCOUNT, name, rev, uuid.uuid4().hex),
                 "Subnets": p.get("Subnets", []), "SecurityGroups": p.get("SecurityGroups", []), "CreatedAt": aws_time()}
    revisions.append(connector)
    return {"VpcConnector": connector}


@aws("apprunner", "ListVpcConnectors")
def apprunner_list_connectors(req, p, region):
    return {"VpcConnectors": [c for revisions in STATE["apprunner_connectors"].values() for c in revisions]}


@aws("apprunner", "DeleteVpcConnector")
def apprunner_delete_connector(req, p, region):
    arn = p.get("VpcConnectorArn", "")
    for revisions in STATE["apprunner_connectors"].values():
        for c in revisions:
            if c["VpcConnectorArn"] == arn and c["Status"] == "ACTIVE":
                if any(s["Status"] != "DELETED" and s.get("NetworkConfiguration", {}).get("EgressConfiguration", {})
                       .get("VpcConnectorArn") == arn for s in STATE["apprunner_services"].values()):
                    raise ApiError(400, "InvalidStateException", "The VPC connector %s is used by a service." % arn)
                c["Status"], c["DeletedAt"] = "INACTIVE", aws_time()
                return {"VpcConnector": c}
    raise ApiError(400, "ResourceNotFoundException", "Resource %s is not found" % arn)


@aws("apprunner", "CreateObservabilityConfiguration")
def apprunner_create_observability(req, p, region):
    name = p.get("ObservabilityConfigurationName", "")
    if len(name) > 32:
        raise ApiError(400, "ValidationException", validation(
            "observabilityConfigurationName", name, "Member must have length less than or equal to 32"))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-_]{3,31}", name):
        raise ApiError(400, "ValidationException", validation(
            "observabilityConfigurationName", name,
            "Member must satisfy regular expression pattern: [A-Za-z0-9][A-Za-z0-9\\-_]{3,31}"))
    revisions = STATE["apprunner_observability"].setdefault(name, [])  # the same name: a new revision
    for c in revisions:
        c["Latest"] = False
    rev = len(revisions) + 1
    conf = {"ObservabilityConfigurationArn": "arn:aws:apprunner:%s:%s:observabilityconfiguration/%s/%d/%s"
            % (region, ACCOUNT, name, rev, uuid.uuid4().hex),
            "ObservabilityConfigurationName": name, "ObservabilityConfigurationRevision": rev, "Latest": True,
            "Status": "ACTIVE", "CreatedAt": aws_time()}
    if p.get("TraceConfiguration"):
        conf["TraceConfiguration"] = p["TraceConfiguration"]
    revisions.append(conf)
    return {"ObservabilityConfiguration": conf}


@aws("apprunner", "ListObservabilityConfigurations")
def apprunner_list_observability(req, p, region):
    name = p.get("ObservabilityConfigurationName")
    return {"ObservabilityConfigurationSummaryList": [
        {k: c[k] for k in ("ObservabilityConfigurationArn", "ObservabilityConfigurationName", "ObservabilityConfigurationRevision")}
        for n, revisions in STATE["apprunner_observability"].items() if not name or n == name
        for c in revisions if c["Latest"] or not p.get("LatestOnly")]}


@aws("apprunner", "DescribeObservabilityConfiguration")
def apprunner_describe_observability(req, p, region):
    arn = p.get("ObservabilityConfigurationArn", "")
    for revisions in STATE["apprunner_observability"].values():
        for c in revisions:
            if c["ObservabilityConfigurationArn"] == arn:
                return {"ObservabilityConfiguration": c}
    raise ApiError(400, "ResourceNotFoundException", "Resource %s is not found" % arn)


@aws("apprunner", "DescribeAutoScalingConfiguration")
def apprunner_describe_scaling(req, p, region):
    arn = p.get("AutoScalingConfigurationArn", "")
    for revisions in STATE["apprunner_scaling"].values():
        for c in revisions:
            if c["AutoScalingConfigurationArn"] == arn:
                return {"AutoScalingConfiguration": c}
    raise ApiError(400, "ResourceNotFoundException", "Resource %s is not found" % arn)


# ---- EC2 (networking) ----

def ec2_tags(p, resource_type):
    tags = []
    for spec in p.get("TagSpecification", []):
        if spec.get("ResourceType") in (None, resource_type):
            tags += [{"key": t.get("Key"), "value": t.get("Value", "")} for t in spec.get("Tag", [])]
    return tags


def ec2_new(prefix, resource_type, p, fields):
    rid = "%s-%s" % (prefix, uuid.uuid4().hex[:17])
    res = dict(fields)
    res["tagSet"] = ec2_tags(p, resource_type)
    STATE["ec2"][rid] = res
    return rid, res


def ec2_get(rid, kind_code, message):
    if rid not in STATE["ec2"]:
        raise ApiError(400, kind_code, message % rid)
    return STATE["ec2"][rid]


def ec2_filter(items, p, ids_key, id_field):
    ids = p.get(ids_key) or []
    out = []
    for res in items:
        if ids and res[id_field] not in ids:
            continue
        ok = True
        for f in p.get("Filter", []):
            name, values = f.get("Name", ""), f.get("Value", [])
            if name.startswith("tag:"):
                have = [t["value"] for t in res.get("tagSet", []) if t["key"] == name[4:]]
            elif name == "attachment.vpc-id":
                have = [a["vpcId"] for a in res.get("attachmentSet", [])]
            else:  # vpc-id -> vpcId, state -> state
                key = re.sub(r"-(\w)", lambda m: m.group(1).upper(), name)
                have = [str(res.get(key, ""))]
            ok = ok and any(v in have for v in values)
        if ok:
            out.append(res)
    for rid in ids:
        if not any(r[id_field] == rid for r in out):
            code, message = {"vpcId": ("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist"),
                             "subnetId": ("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist"),
                             "natGatewayId": ("NatGatewayNotFound", "NAT gateway %s was not found"),
                             "groupId": ("InvalidGroup.NotFound", "The security group '%s' does not exist"),
                             }.get(id_field, ("InvalidID", "The ID '%s' is not valid"))
            raise ApiError(400, code, message % rid)
    return out


def ec2_of(prefix):
    return [r for rid, r in STATE["ec2"].items() if rid.startswith(prefix + "-")]


@aws("ec2", "CreateVpc")
def ec2_create_vpc(req, p, region):
    rid, vpc = ec2_new("vpc", "vpc", p, {"cidrBlock": p.get("CidrBlock"), "state": "available", "ownerId": ACCOUNT,
                                        "instanceTenancy": "default", "isDefault": False,
                                        "dhcpOptionsId": "dopt-" + rand(8, "0123456789abcdef")})
    vpc["vpcId"] = rid
    return {"vpc": vpc}


@aws("ec2", "DescribeVpcs")
def ec2_describe_vpcs(req, p, region):
    return {"vpcSet": ec2_filter(ec2_of("vpc"), p, "VpcId", "vpcId")}


@aws("ec2", "ModifyVpcAttribute", "ModifySubnetAttribute", "CreateTags", "DeleteTags")
def ec2_ok(req, p, region):
    return {"return": True}


@aws("ec2", "CreateSubnet")
def ec2_create_subnet(req, p, region):
    ec2_get(p.get("VpcId", ""), "InvalidVpcID.NotFound", "The vpc ID '%s' does not exist")
    az = p.get("AvailabilityZone") or region + "a"
    rid, sub = ec2_new("subnet", "subnet", p, {"vpcId": p.get("VpcId"), "cidrBlock": p.get("CidrBlock"),
                                              "availabilityZone": az, "state": "available",
                                              "availableIpAddressCount": 11, "mapPublicIpOnLaunch": False,
                                              "defaultForAz": False, "ownerId": ACCOUNT})
    sub["subnetId"] = rid
    sub["subnetArn"] = "arn:aws:ec2:%s:%s:subnet/%s" % (region, ACCOUNT, rid)
    return {"subnet": sub}


@aws("ec2", "DescribeSubnets")
def ec2_describe_subnets(req, p, region):
    return {"subnetSet": ec2_filter(ec2_of("subnet"), p, "SubnetId", "subnetId")}


@aws("ec2", "AllocateAddress")
def ec2_allocate(req, p, region):
    n = len(ec2_of("eipalloc"))
    rid, addr = ec2_new("eipalloc", "elastic-ip", p, {"publicIp": "198.51.100.%d" % (10 + n % 200),
                                                    "domain": p.get("Domain", "vpc"), "publicIpv4Pool": "amazon",
                                                    "networkBorderGroup": region})
    addr["allocationId"] = rid
    return dict(addr)


@aws("ec2", "CreateNatGateway")
def ec2_create_nat(req, p, region):
    sub = ec2_get(p.get("SubnetId", ""), "InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist")
    alloc = ec2_get(p.get("AllocationId", ""), "InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist")
    # Available at once, so `aws ec2 wait nat-gateway-available` returns on its first look.
    rid, nat = ec2_new("nat", "natgateway", p, {"subnetId": sub["subnetId"], "vpcId": sub["vpcId"], "state": "available",
                                               "connectivityType": p.get("ConnectivityType", "public"),
                                               "createTime": iso_time(),
                                               "natGatewayAddressSet": [{"allocationId": alloc["allocationId"],
                                                                         "publicIp": alloc["publicIp"],
                                                                         "privateIp": "10.0.0.%d" % random.randrange(4, 250),
                                                                         "networkInterfaceId": "eni-" + uuid.uuid4().hex[:17],
                                                                         "isPrimary": True, "status": "succeeded"}]})
    nat["natGatewayId"] = rid
    return {"natGateway": nat, "clientToken": p.get("ClientToken")}


@aws("ec2", "DescribeNatGateways")
def ec2_describe_nat(req, p, region):
    return {"natGatewaySet": ec2_filter(ec2_of("nat"), p, "NatGatewayId", "natGatewayId")}


@aws("ec2", "CreateInternetGateway")
def ec2_create_igw(req, p, region):
    rid, igw = ec2_new("igw", "internet-gateway", p, {"attachmentSet": [], "ownerId": ACCOUNT})
    igw["internetGatewayId"] = rid
    return {"internetGateway": igw}


@aws("ec2", "AttachInternetGateway")
def ec2_attach_igw(req, p, region):
    igw = ec2_get(p.get("InternetGatewayId", ""), "InvalidInternetGatewayID.NotFound", "The internetGateway ID '%s' does not exist")
    ec2_get(p.get("VpcId", ""), "InvalidVpcID.NotFound", "The vpc ID '%s' does not exist")
    igw["attachmentSet"] = [{"vpcId": p.get("VpcId"), "state": "available"}]
    return {}


@aws("ec2", "DescribeInternetGateways")
def ec2_describe_igw(req, p, region):
    return {"internetGatewaySet": ec2_filter(ec2_of("igw"), p, "InternetGatewayId", "internetGatewayId")}


@aws("ec2", "CreateRouteTable")
def ec2_create_rtb(req, p, region):
    vpc = ec2_get(p.get("VpcId", ""), "InvalidVpcID.NotFound", "The vpc ID '%s' does not exist")
    rid, rtb = ec2_new("rtb", "route-table", p, {"vpcId": vpc["vpcId"], "ownerId": ACCOUNT, "associationSet": [],
                                                "routeSet": [{"destinationCidrBlock": vpc["cidrBlock"], "gatewayId": "local",
                                                              "state": "active", "origin": "CreateRouteTable"}]})
    rtb["routeTableId"] = rid
    return {"routeTable": rtb}


@aws("ec2", "CreateRoute")
def ec2_create_route(req, p, region):
    rtb = ec2_get(p.get("RouteTableId", ""), "InvalidRouteTableID.NotFound", "The routeTable ID '%s' does not exist")
    route = {"destinationCidrBlock": p.get("DestinationCidrBlock"), "state": "active", "origin": "CreateRoute"}
    for src, dst in (("GatewayId", "gatewayId"), ("NatGatewayId", "natGatewayId")):
        if p.get(src):
            route[dst] = p[src]
    rtb["routeSet"].append(route)
    return {"return": True}


@aws("ec2", "AssociateRouteTable")
def ec2_associate_rtb(req, p, region):
    rtb = ec2_get(p.get("RouteTableId", ""), "InvalidRouteTableID.NotFound", "The routeTable ID '%s' does not exist")
    ec2_get(p.get("SubnetId", ""), "InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist")
    assoc = "rtbassoc-" + uuid.uuid4().hex[:17]
    rtb["associationSet"].append({"routeTableAssociationId": assoc, "routeTableId": rtb["routeTableId"],
                                  "subnetId": p.get("SubnetId"), "main": False, "associationState": {"state": "associated"}})
    return {"associationId": assoc, "associationState": {"state": "associated"}}


@aws("ec2", "DescribeRouteTables")
def ec2_describe_rtb(req, p, region):
    return {"routeTableSet": ec2_filter(ec2_of("rtb"), p, "RouteTableId", "routeTableId")}


@aws("ec2", "CreateSecurityGroup")
def ec2_create_sg(req, p, region):
    if p.get("VpcId"):
        ec2_get(p["VpcId"], "InvalidVpcID.NotFound", "The vpc ID '%s' does not exist")
    for sg in ec2_of("sg"):
        if sg["groupName"] == p.get("GroupName") and sg["vpcId"] == p.get("VpcId"):
            raise ApiError(400, "InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'"
                           % (p.get("GroupName"), p.get("VpcId")))
    rid, sg = ec2_new("sg", "security-group", p, {"groupName": p.get("GroupName"), "groupDescription": p.get("GroupDescription"),
                                                 "vpcId": p.get("VpcId"), "ownerId": ACCOUNT, "ipPermissions": [],
                                                 "ipPermissionsEgress": [{"ipProtocol": "-1",
                                                                          "ipRanges": [{"cidrIp": "0.0.0.0/0"}]}]})
    sg["groupId"] = rid
    return {"groupId": rid, "securityGroupArn": "arn:aws:ec2:%s:%s:security-group/%s" % (region, ACCOUNT, rid)}


@aws("ec2", "DescribeSecurityGroups")
def ec2_describe_sg(req, p, region):
    return {"securityGroupInfo": ec2_filter(ec2_of("sg"), p, "GroupId", "groupId")}


@aws("ec2", "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress")
def ec2_authorize(req, p, region):
    sg = ec2_get(p.get("GroupId", ""), "InvalidGroup.NotFound", "The security group '%s' does not exist")
    key = "ipPermissions" if req.op.endswith("Ingress") else "ipPermissionsEgress"
    for perm in p.get("IpPermissions", []):
        sg[key].append({"ipProtocol": perm.get("IpProtocol"), "fromPort": perm.get("FromPort"), "toPort": perm.get("ToPort"),
                        "ipRanges": [{"cidrIp": r.get("CidrIp")} for r in perm.get("IpRanges", [])]})
    return {"return": True}


@aws("ec2", "DescribeAddresses")
def ec2_describe_addresses(req, p, region):
    return {"addressesSet": ec2_filter(ec2_of("eipalloc"), p, "AllocationId", "allocationId")}


@aws("ec2", "DescribeAvailabilityZones")
def ec2_describe_azs(req, p, region):
    return {"availabilityZoneInfo": [{"zoneName": region + z, "zoneId": "%s-az%d" % (region[:3] + region[-1], i + 1),
                                      "zoneState": "available", "regionName": region, "zoneType": "availability-zone"}
                                     for i, z in enumerate("abc")]}


# Deletions refuse what EC2 refuses while something still depends on the resource.

def ec2_dependency(what, rid):
    raise ApiError(400, "DependencyViolation", "The %s '%s' has dependencies and cannot be deleted." % (what, rid))


def ec2_live_nats():
    return [n for n in ec2_of("nat") if n["state"] not in ("deleting", "deleted")]


@aws("ec2", "DeleteNatGateway")
def ec2_delete_nat(req, p, region):
    nat = ec2_get(p.get("NatGatewayId", ""), "NatGatewayNotFound", "NAT gateway %s was not found")
    nat["state"] = "deleted"  # at once, so the wait for it ends on its first look
    nat["deleteTime"] = iso_time()
    return {"natGatewayId": nat["natGatewayId"]}


@aws("ec2", "ReleaseAddress")
def ec2_release(req, p, region):
    rid = p.get("AllocationId", "")
    ec2_get(rid, "InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist")
    if any(a["allocationId"] == rid for n in ec2_live_nats() for a in n["natGatewayAddressSet"]):
        raise ApiError(400, "InvalidIPAddress.InUse", "Address %s is in use." % rid)
    del STATE["ec2"][rid]
    return {"return": True}


@aws("ec2", "DetachInternetGateway")
def ec2_detach_igw(req, p, region):
    igw = ec2_get(p.get("InternetGatewayId", ""), "InvalidInternetGatewayID.NotFound", "The internetGateway ID '%s' does not exist")
    if not any(a["vpcId"] == p.get("VpcId") for a in igw["attachmentSet"]):
        raise ApiError(400, "Gateway.NotAttached", "resource %s is not attached to network %s" % (igw["internetGatewayId"], p.get("VpcId")))
    igw["attachmentSet"] = []
    return {"return": True}


# What each deletion names, how EC2 says it is not there, and what keeps it (DependencyViolation).
EC2_DELETIONS = {
    "DeleteInternetGateway": ("InternetGatewayId", "internetGateway", "InvalidInternetGatewayID.NotFound",
                              lambda rid, res: res["attachmentSet"]),
    "DeleteSubnet": ("SubnetId", "subnet", "InvalidSubnetID.NotFound",
                     lambda rid, res: any(n["subnetId"] == rid for n in ec2_live_nats())),
    "DeleteRouteTable": ("RouteTableId", "routeTable", "InvalidRouteTableID.NotFound",
                         lambda rid, res: res["associationSet"]),
    "DeleteSecurityGroup": ("GroupId", "security group", "InvalidGroup.NotFound", lambda rid, res: False),
    "DeleteVpc": ("VpcId", "vpc", "InvalidVpcID.NotFound",
                  lambda rid, res: any(r.get("vpcId") == rid for k in ("subnet", "rtb", "sg") for r in ec2_of(k))
                  or any(a["vpcId"] == rid for g in ec2_of("igw") for a in g["attachmentSet"])
                  or any(n["vpcId"] == rid for n in ec2_live_nats())),
}


@aws("ec2", *EC2_DELETIONS)
def ec2_delete(req, p, region):
    id_key, what, not_found, held = EC2_DELETIONS[req.op.split(".", 1)[1]]
    rid = p.get(id_key, "")
    if held(rid, ec2_get(rid, not_found, "The " + what + " ID '%s' does not exist")):
        ec2_dependency(what, rid)
    del STATE["ec2"][rid]
    if what == "subnet":  # its route table associations go with it
        for rtb in ec2_of("rtb"):
            rtb["associationSet"] = [a for a in rtb["associationSet"] if a.get("subnetId") != rid]
    return {"return": True}


# ---- SNS (alarm notifications) ----

def sns_topic(arn):
    if arn not in STATE["sns_topics"]:
        raise ApiError(404, "NotFound", "Topic does not exist")
    return STATE["sns_topics"][arn]


@aws("sns", "CreateTopic")
def sns_create_topic(req, p, region):
    arn = "arn:aws:sns:%s:%s:%s" % (region, ACCOUNT, p.get("Name", ""))
    STATE["sns_topics"].setdefault(arn, {"Subscriptions": []})  # creating an existing topic returns it
    return {"TopicArn": arn}


@aws("sns", "GetTopicAttributes")
def sns_get_attributes(req, p, region):
    arn = p.get("TopicArn", "")
    topic = sns_topic(arn)
    return {"Attributes": XmlMap(TopicArn=arn, Owner=ACCOUNT, DisplayName="",
                                 SubscriptionsConfirmed=str(sum(1 for s in topic["Subscriptions"]
                                                                if s["SubscriptionArn"] != "PendingConfirmation")),
                                 SubscriptionsPending=str(sum(1 for s in topic["Subscriptions"]
                                                              if s["SubscriptionArn"] == "PendingConfirmation")))}


@aws("sns", "Subscribe")
def sns_subscribe(req, p, region):
    topic = sns_topic(p.get("TopicArn", ""))
    # An e-mail subscription waits for its link to be followed, as the real one does.
    confirmed = p.get("Protocol") not in ("email", "email-json", "http", "https")
    sub_arn = "%s:%s" % (p["TopicArn"], uuid.uuid4()) if confirmed else "PendingConfirmation"
    topic["Subscriptions"].append({"SubscriptionArn": sub_arn, "Owner": ACCOUNT, "Protocol": p.get("Protocol"),
                                   "Endpoint": p.get("Endpoint"), "TopicArn": p["TopicArn"]})
    return {"SubscriptionArn": sub_arn if confirmed else "pending confirmation"}


@aws("sns", "ListSubscriptionsByTopic")
def sns_list_subscriptions(req, p, region):
    return {"Subscriptions": sns_topic(p.get("TopicArn", ""))["Subscriptions"]}


# ---- CloudWatch Logs ----

@aws("logs", "DescribeLogGroups")
def logs_describe(req, p, region):
    prefix = p.get("logGroupNamePrefix", "")
    return {"logGroups": [g for n, g in sorted(STATE["log_groups"].items()) if n.startswith(prefix)]}


@aws("logs", "CreateLogGroup")
def logs_create(req, p, region):
    name = p.get("logGroupName", "")
    if name in STATE["log_groups"]:
        raise ApiError(400, "ResourceAlreadyExistsException", "The specified log group already exists")
    STATE["log_groups"][name] = {"logGroupName": name, "creationTime": int(aws_time() * 1000), "metricFilterCount": 0,
                                 "arn": "arn:aws:logs:%s:%s:log-group:%s:*" % (region, ACCOUNT, name), "storedBytes": 0,
                                 "logGroupClass": "STANDARD"}
    return {}


@aws("logs", "PutRetentionPolicy")
def logs_retention(req, p, region):
    group = STATE["log_groups"].get(p.get("logGroupName", ""))
    if group is None:
        raise ApiError(400, "ResourceNotFoundException", "The specified log group does not exist.")
    group["retentionInDays"] = p.get("retentionInDays")
    return {}


@aws("logs", "PutMetricFilter")
def logs_put_filter(req, p, region):
    group = STATE["log_groups"].get(p.get("logGroupName", ""))
    if group is None:
        raise ApiError(400, "ResourceNotFoundException", "The specified log group does not exist.")
    key = (p.get("logGroupName"), p.get("filterName"))
    if key not in STATE["metric_filters"]:
        group["metricFilterCount"] += 1
    STATE["metric_filters"][key] = dict(p, creationTime=int(aws_time() * 1000))
    return {}


@aws("logs", "DescribeMetricFilters")
def logs_describe_filters(req, p, region):
    return {"metricFilters": [f for (g, n), f in STATE["metric_filters"].items()
                              if (not p.get("logGroupName") or g == p["logGroupName"])
                              and n.startswith(p.get("filterNamePrefix", ""))]}


@aws("logs", "FilterLogEvents", "GetLogEvents")
def logs_events(req, p, region):
    # Lines of <state-dir>/logs are the events of any log stream, oldest first.
    if p.get("logGroupName") and p["logGroupName"] not in STATE["log_groups"]:
        raise ApiError(400, "ResourceNotFoundException", "The specified log group does not exist.")
    t = int(aws_time() * 1000)
    events = [{"timestamp": t, "ingestionTime": t, "message": line, "logStreamName": "standin/Main/0",
               "eventId": str(i)} for i, line in enumerate(state_file_lines("logs"))]
    if req.op.endswith("GetLogEvents"):
        return {"events": [{k: e[k] for k in ("timestamp", "message", "ingestionTime")} for e in events],
                "nextForwardToken": "f/0", "nextBackwardToken": "b/0"}
    return {"events": events, "searchedLogStreams": []}


# ---- CloudWatch ----

@aws("cloudwatch", "PutDashboard")
def cw_put_dashboard(req, p, region):
    try:
        json.loads(p.get("DashboardBody", ""))
    except ValueError as e:
        raise ApiError(400, "InvalidParameterInput", "The field DashboardBody must be a valid JSON object: %s" % e)
    STATE["dashboards"][p.get("DashboardName", "")] = p.get("DashboardBody")
    return {"DashboardValidationMessages": []}


@aws("cloudwatch", "GetDashboard")
def cw_get_dashboard(req, p, region):
    name = p.get("DashboardName", "")
    if name not in STATE["dashboards"]:
        raise ApiError(404, "ResourceNotFound", "Dashboard %s does not exist" % name)
    return {"DashboardName": name, "DashboardBody": STATE["dashboards"][name],
            "DashboardArn": "arn:aws:cloudwatch::%s:dashboard/%s" % (ACCOUNT, name)}


@aws("cloudwatch", "PutMetricAlarm")
def cw_put_alarm(req, p, region):
    STATE["alarms"][p.get("AlarmName", "")] = dict(p, AlarmArn="arn:aws:cloudwatch:%s:%s:alarm:%s" % (
        region, ACCOUNT, p.get("AlarmName")), StateValue="INSUFFICIENT_DATA")
    return {}


@aws("cloudwatch", "DescribeAlarms")
def cw_describe_alarms(req, p, region):
    names = p.get("AlarmNames")
    return {"MetricAlarms": [a for n, a in STATE["alarms"].items() if not names or n in names], "CompositeAlarms": []}


# ---------------------------------------------------------------------------------------------
# Command line: serve, or show a record file
# ---------------------------------------------------------------------------------------------

def show(record_file, pattern, as_json):
    """Recorded calls whose summary line matches PATTERN (a regular expression)."""
    rx = re.compile(pattern or "")
    if not os.path.exists(record_file):
        return
    with open(record_file) as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)
            summary = "%s %s %s %s %s %s" % (e.get("status"), e.get("service"), e.get("op") or "-", e.get("method"),
                                             e.get("path"), json.dumps(e.get("body"), sort_keys=True))
            if rx.search(summary):
                print(line.rstrip("\n") if as_json else summary)


def exit_with_parent(server, pid):
    """A test that ends without stopping the stand-in leaves no server behind."""
    while True:
        time.sleep(1)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            server.shutdown()
            return
        except PermissionError:  # alive, someone else's
            pass


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout's first line)")
    ap.add_argument("--record", help="append every request to this file, one JSON line each")
    ap.add_argument("--state-dir", help="switch files (check-fails, rollback) and state.json")
    ap.add_argument("--show", metavar="RECORD", help="print the calls recorded in RECORD instead of serving")
    ap.add_argument("--filter", default="", help="with --show: only calls whose summary matches this regex")
    ap.add_argument("--json", action="store_true", help="with --show: print the full JSON records")
    ap.add_argument("--parent-pid", type=int, help="exit when this process has ended")
    ARGS = ap.parse_args()
    if ARGS.show:
        show(ARGS.show, ARGS.filter, ARGS.json)
        return
    if ARGS.state_dir:
        os.makedirs(ARGS.state_dir, exist_ok=True)
    reset_state()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    ARGS.bound_port = server.server_address[1]
    if ARGS.parent_pid:
        threading.Thread(target=exit_with_parent, args=(server, ARGS.parent_pid), daemon=True).start()
    print(ARGS.bound_port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
