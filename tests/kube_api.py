"""A Kubernetes API server on 127.0.0.1 for a real kubectl: objects in memory, no cluster.

It answers what the scripts' kubectl commands ask (tests/test_real_kubectl.py): legacy
discovery of the kinds they touch, get and list with label and field selectors, delete,
create, patch (server-side apply, merge and strategic patches of labels alone) and a pod's
log. kubectl's own code parses each flag, builds each request, evaluates each jsonpath and
--sort-by on what comes back, and renders each --dry-run=client object; this server stands
in only for etcd and the apiserver's selection, with the API server's rules where they
matter: a field selector on a field the kind does not support is a 400 (pods support the
fields of k8s.io/kubernetes pkg/registry/core/pod/strategy.go PodToSelectableFields).
Watches are not served: a test's objects are gone or there when kubectl looks.
"""

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

# (group, version) -> [(plural, kind, namespaced, short names)]
RESOURCES = {
    ("", "v1"): [("pods", "Pod", True, ["po"]), ("events", "Event", True, ["ev"]),
                 ("secrets", "Secret", True, []), ("services", "Service", True, ["svc"]),
                 ("configmaps", "ConfigMap", True, ["cm"]), ("namespaces", "Namespace", False, ["ns"]),
                 ("nodes", "Node", False, ["no"]), ("persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"])],
    ("apps", "v1"): [("deployments", "Deployment", True, ["deploy"])],
    ("apiextensions.k8s.io", "v1"): [("customresourcedefinitions", "CustomResourceDefinition", False, ["crd", "crds"])],
    ("ray.io", "v1"): [("rayclusters", "RayCluster", True, []), ("rayjobs", "RayJob", True, []),
                       ("rayservices", "RayService", True, [])],
    ("monitoring.coreos.com", "v1"): [("podmonitors", "PodMonitor", True, []),
                                      ("prometheuses", "Prometheus", True, [])],
}
KINDS = {kind: (group, version, plural, namespaced)
         for (group, version), listed in RESOURCES.items() for plural, kind, namespaced, _ in listed}
POD_FIELDS = {"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
              "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
              "status.podIP", "status.podIPs", "status.nominatedNodeName", "status.hostIP"}
# An OpenAPI v2 document without definitions, in the protobuf kubectl asks for (gnostic's
# openapi_v2.Document: swagger = 1, info = 2 {title = 1, version = 2}).
OPENAPI_V2 = b"\x0a\x032.0\x12\x0a\x0a\x04fake\x12\x02v1"
PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                  r"(?:/namespaces/(?P<namespace>[^/]+)(?=/))?/(?P<plural>[^/]+)"
                  r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log))?$")


def split_terms(selector):
    """A selector's comma-separated terms; commas inside `in (a,b)` stay in their term."""
    terms, depth, current = [], 0, ""
    for character in selector:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if character == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += character
    return [term for term in terms + [current.strip()] if term]


def label_matches(labels, selector):
    """Kubernetes label selector semantics: =, ==, !=, in, notin, exists, !exists."""
    for term in split_terms(selector):
        if match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, operator, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if (operator == "in") != (key in labels and labels[key] in values):
                return False
        elif match := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", term):
            key, operator, value = match.groups()
            if (operator == "!=") == (labels.get(key) == value):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_value(obj, path):
    node = obj
    for part in path.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    return "" if node is None else str(node)


def status(code, reason, message, **details):
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "details": details, "code": code}


class FakeKubeAPI:
    """Serve OBJECTS (dicts with kind, apiVersion and metadata) until stop()."""

    def __init__(self, objects=()):
        self.objects = {}
        self.requests = []
        self.logs = {}
        for obj in objects:
            self.put(obj)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                api.requests.append({"method": self.command, "path": url.path, "query": query, "body": body,
                                     "content_type": self.headers.get("Content-Type", "")})
                code, payload = api.handle(self.command, url.path, query, body)
                data = payload if isinstance(payload, bytes) else payload.encode() if isinstance(payload, str) \
                    else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", {bytes: "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                                                  str: "text/plain"}.get(type(payload), "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path, context="minikube", namespace="default"):
        """Write a kubeconfig whose CONTEXT (the current one) points at this server."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "users": [{"name": "fake", "user": {}}]}))
        return path

    # ------------------------------------------------------------------ the store

    @staticmethod
    def key(group, plural, namespace, name):
        return group, plural, namespace or "", name

    def put(self, obj):
        obj = copy.deepcopy(obj)
        group, _, plural, namespaced = KINDS[obj["kind"]]
        metadata = obj.setdefault("metadata", {})
        if namespaced:
            metadata.setdefault("namespace", "default")
        metadata.setdefault("uid", f"uid-{len(self.objects) + 1}")
        metadata.setdefault("resourceVersion", "1")
        metadata.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self.objects[self.key(group, plural, metadata.get("namespace"), metadata["name"])] = obj
        return obj

    def get(self, kind, name, namespace="default"):
        group, _, plural, namespaced = KINDS[kind]
        return self.objects.get(self.key(group, plural, namespace if namespaced else "", name))

    def deleted(self):
        """(kind, namespace, name) of every object a DELETE removed, in order."""
        return [(request["kind"], request["namespace"], request["name"])
                for request in self.requests if request.get("deleted")]

    # ------------------------------------------------------------------ the API

    def discovery(self, path):
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            groups = [{"name": group, "versions": [{"groupVersion": f"{group}/{version}", "version": version}],
                       "preferredVersion": {"groupVersion": f"{group}/{version}", "version": version}}
                      for group, version in RESOURCES if group]
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        if path == "/openapi/v2":
            # No schemas: kubectl's client-side validation then has nothing to check against.
            return 200, OPENAPI_V2
        if path == "/version":
            return 200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0"}
        for (group, version), listed in RESOURCES.items():
            if path == (f"/apis/{group}/{version}" if group else f"/api/{version}"):
                verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                resources = [{"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                              "verbs": verbs, "shortNames": shorts} for plural, kind, namespaced, shorts in listed]
                if not group:
                    resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                                      "verbs": ["get"]})
                return 200, {"kind": "APIResourceList", "apiVersion": "v1",
                             "groupVersion": f"{group}/{version}" if group else version, "resources": resources}
        return None

    def handle(self, method, path, query, body):
        found = self.discovery(path) if method == "GET" else None
        if found:
            return found
        match = PATH.match(path)
        if not match:
            return status(404, "NotFound", f"the server could not find the requested resource ({path})")
        group = match["group"] or ""
        version = match["version"] or match["core"]
        listed = {plural: (kind, namespaced) for plural, kind, namespaced, _ in RESOURCES.get((group, version), [])}
        plural, name, namespace = match["plural"], match["name"], match["namespace"]
        if plural not in listed:
            return status(404, "NotFound", f"the server could not find the requested resource ({path})")
        kind, namespaced = listed[plural]
        namespace = (namespace or "") if namespaced else ""
        if query.get("watch") in ("true", "1"):
            return status(405, "MethodNotAllowed", "this fake API server serves no watches")
        if name is None and method == "GET":
            return self.list(group, version, kind, plural, namespace, query)
        if name is None and method == "POST":
            obj = yaml.safe_load(body)
            if query.get("dryRun") != "All":
                if self.key(group, plural, namespace, obj["metadata"]["name"]) in self.objects:
                    return status(409, "AlreadyExists", f'{plural} "{obj["metadata"]["name"]}" already exists')
                obj = self.put(obj)
            return 201, obj
        current = self.objects.get(self.key(group, plural, namespace, name))
        if match["sub"] == "log":
            return (200, self.logs.get(name, "")) if current else status(404, "NotFound", f'pods "{name}" not found')
        if method == "PATCH":
            return self.patch(current, body, self.requests[-1]["content_type"])
        if current is None:
            return status(404, "NotFound", f'{plural}.{group or "core"} "{name}" not found',
                          name=name, group=group, kind=plural)
        if method == "DELETE":
            self.delete(self.key(group, plural, namespace, name), self.requests[-1])
            return 200, current
        return 200, current

    def delete(self, key, request=None):
        """Remove an object, and what it owns, as the garbage collector does (ownerReferences)."""
        obj = self.objects.pop(key)
        if request is not None:
            request.update(deleted=True, kind=obj["kind"], namespace=key[2], name=key[3])
        uid = obj["metadata"]["uid"]
        for owned, child in list(self.objects.items()):
            if any(owner.get("uid") == uid for owner in child["metadata"].get("ownerReferences", [])):
                self.delete(owned)

    def list(self, group, version, kind, plural, namespace, query):
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        supported = POD_FIELDS if plural == "pods" else {"metadata.name", "metadata.namespace"}
        wanted = []
        for term in split_terms(fields):
            field, operator, value = re.fullmatch(r"([^=!]+)(==|=|!=)(.*)", term).groups()
            if field not in supported:
                return status(400, "BadRequest", f'"{field}" is not a known field selector: '
                              f'only "{", ".join(sorted(supported))}"')
            wanted.append((field, operator != "!=", value))
        items = [obj for (obj_group, obj_plural, obj_namespace, _), obj in sorted(self.objects.items())
                 if (obj_group, obj_plural) == (group, plural) and namespace in ("", obj_namespace)
                 and label_matches(obj["metadata"].get("labels") or {}, labels)
                 and all((field_value(obj, field) == value) == equal for field, equal, value in wanted)]
        return 200, {"kind": f"{kind}List", "apiVersion": f"{group}/{version}" if group else version,
                     "metadata": {"resourceVersion": "1"}, "items": items}

    def patch(self, current, body, content_type):
        change = yaml.safe_load(body)
        if "apply-patch" in content_type:
            return (200, self.put(change)) if current is None else (200, self.put({**current, **change}))
        if current is None:
            return status(404, "NotFound", "not found")
        labels = current["metadata"].setdefault("labels", {})
        for key, value in ((change.get("metadata") or {}).get("labels") or {}).items():
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        return 200, self.put(current)
