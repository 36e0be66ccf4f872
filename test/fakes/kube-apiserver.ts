// An in-process fake kube-apiserver speaking the real wire protocol over HTTP(S), so tests drive the
// real @kubernetes/client-node. It keeps objects in memory with one global resourceVersion counter
// (as etcd does), serves list/get/create/update/patch/delete for any resource registered below, and
// watch streams (newline-delimited JSON events) with resourceVersion resume, bookmarks, label and
// field selectors, and "410 Gone" once the requested version has been compacted away.
// Test hooks: breakWatches() cuts every stream mid-flight, compact() forgets history,
// failNext() injects an error response, requests records what the client sent.
//
// Kubernetes tests run against the real kube-apiserver (test/helpers/kube-apiserver.ts); this fake
// is kept only for faults a real server cannot be made to give on demand, and each user says which:
// today test/integration/ipam-daemon/k8s/pod-watcher.test.ts (a 503 answer to the pod list).
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    generateName?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
};

export interface ResourceDef {
  /** '' for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

/** The resources vpc-ipam touches; tests may register more. */
export const DEFAULT_RESOURCES: ResourceDef[] = [
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event', namespaced: true },
  {
    group: 'vpc-ipam.io',
    version: 'v1alpha1',
    plural: 'podnetworkconfigs',
    kind: 'PodNetworkConfig',
    namespaced: false,
  },
  {
    group: 'vpc-ipam.io',
    version: 'v1alpha1',
    plural: 'nodeipamstatuses',
    kind: 'NodeIPAMStatus',
    namespaced: false,
  },
];

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  authorization: string | undefined;
  body: unknown;
}

export interface FakeKubeApiServerOptions {
  /** Serve HTTPS with this key pair (PEM) instead of plain HTTP. */
  tls?: { key: string; cert: string };
  /** Bearer token the client must present; any when unset. */
  token?: string;
  /** Watch events kept for resume; older resourceVersions answer 410 Gone. */
  historyLimit?: number;
  resources?: ResourceDef[];
}

type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEntry {
  rv: number;
  type: WatchEventType;
  resource: string;
  object: KubeObject;
  /** The object before this change (MODIFIED only), to turn selector transitions into ADDED/DELETED. */
  previous?: KubeObject;
}

interface Watcher {
  resource: string;
  namespace: string | undefined;
  matches: (obj: KubeObject) => boolean;
  bookmarks: boolean;
  res: http.ServerResponse;
  apiVersion: string;
  kind: string;
}

interface InjectedFailure {
  method: string;
  pathPattern: RegExp;
  status: number;
  reason: string;
  remaining: number;
  when: ((req: RecordedRequest) => boolean) | undefined;
}

class HttpError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

const MICROTIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export class FakeKubeApiServer {
  readonly requests: RecordedRequest[] = [];
  private readonly server: http.Server;
  private readonly resources: Map<string, ResourceDef> = new Map();
  private readonly objects: Map<string, KubeObject> = new Map();
  private readonly history: HistoryEntry[] = [];
  private readonly watchers: Set<Watcher> = new Set();
  private readonly failures: InjectedFailure[] = [];
  private readonly historyLimit: number;
  private readonly token: string | undefined;
  private readonly tls: boolean;
  private rv = 1000;
  /** Watches from a resourceVersion below this answer 410 Gone. */
  private oldestResumableRv = 1000;
  private baseUrl = '';

  constructor(options: FakeKubeApiServerOptions = {}) {
    this.historyLimit = options.historyLimit ?? 10_000;
    this.token = options.token;
    this.tls = options.tls !== undefined;
    for (const def of options.resources ?? DEFAULT_RESOURCES) this.resources.set(resourceId(def), def);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendStatus(res, 500, 'InternalError', String(err));
      });
    };
    this.server = options.tls
      ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler)
      : http.createServer(handler);
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.baseUrl = `${this.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    return this.baseUrl;
  }

  get url(): string {
    return this.baseUrl;
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * A kubeconfig (as loadFromOptions takes it) pointing at this server. The client refuses plain
   * http unless skipTLSVerify is set; over https, pass the CA (PEM) to have the certificate verified.
   */
  kubeConfigOptions(token = this.token ?? 'fake-token', caPem?: string): Record<string, unknown> {
    const cluster = caPem
      ? { name: 'fake', server: this.baseUrl, caData: Buffer.from(caPem).toString('base64') }
      : { name: 'fake', server: this.baseUrl, skipTLSVerify: true };
    return {
      clusters: [cluster],
      users: [{ name: 'fake', token }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    };
  }

  // ---- direct store access for tests (these emit watch events like API writes do) ----

  put(resource: string, obj: KubeObject): KubeObject {
    const def = this.def(resource);
    const ns = def.namespaced ? (obj.metadata?.namespace ?? 'default') : undefined;
    const existing = this.objects.get(objectKey(def, ns, obj.metadata?.name ?? ''));
    if (existing) return this.write(def, ns, { ...obj, metadata: { ...obj.metadata } }, existing);
    return this.createObject(def, ns, structuredClone(obj));
  }

  get(resource: string, name: string, namespace?: string): KubeObject | undefined {
    const def = this.def(resource);
    const obj = this.objects.get(objectKey(def, def.namespaced ? (namespace ?? 'default') : undefined, name));
    return obj ? structuredClone(obj) : undefined;
  }

  list(resource: string, namespace?: string): KubeObject[] {
    const def = this.def(resource);
    return [...this.objects.values()]
      .filter((o) => this.resourceOf(o) === resourceId(def))
      .filter((o) => namespace === undefined || o.metadata?.namespace === namespace)
      .map((o) => structuredClone(o));
  }

  remove(resource: string, name: string, namespace?: string): void {
    const def = this.def(resource);
    this.deleteObject(def, def.namespaced ? (namespace ?? 'default') : undefined, name);
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Forget all history: every watch resumed from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.history.length = 0;
    this.oldestResumableRv = this.rv;
  }

  /** Cut every open watch stream mid-flight (the TCP connection is destroyed, no clean end). */
  breakWatches(): number {
    const n = this.watchers.size;
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    return n;
  }

  /** End every open watch stream cleanly (as the server's timeoutSeconds does). */
  closeWatches(): number {
    const n = this.watchers.size;
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    return n;
  }

  /** Send a BOOKMARK with the current resourceVersion to every watch that asked for bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      writeEvent(w.res, 'BOOKMARK', {
        apiVersion: w.apiVersion,
        kind: w.kind,
        metadata: { resourceVersion: String(this.rv) },
      });
    }
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  /**
   * The next `times` requests matching method, path (and `when`, e.g. on the body) answer `status`
   * with a Status body.
   */
  failNext(
    method: string,
    pathPattern: RegExp,
    status: number,
    reason = 'InternalError',
    times = 1,
    when?: (req: RecordedRequest) => boolean,
  ): void {
    this.failures.push({ method: method.toUpperCase(), pathPattern, status, reason, remaining: times, when });
  }

  // ---- HTTP ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    const query = Object.fromEntries(url.searchParams.entries());
    const raw = await readBody(req);
    const contentType = req.headers['content-type']?.split(';')[0]?.trim();
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        this.requests.push({
          method,
          path: url.pathname,
          query,
          contentType,
          authorization: req.headers.authorization,
          body: raw,
        });
        return sendStatus(res, 400, 'BadRequest', 'request body is not valid JSON');
      }
    }
    this.requests.push({
      method,
      path: url.pathname,
      query,
      contentType,
      authorization: req.headers.authorization,
      body,
    });

    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      return sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
    }
    const recorded = this.requests[this.requests.length - 1]!;
    const failure = this.failures.find(
      (f) =>
        f.method === method && f.pathPattern.test(url.pathname) && (f.when === undefined || f.when(recorded)),
    );
    if (failure) {
      failure.remaining -= 1;
      if (failure.remaining <= 0) this.failures.splice(this.failures.indexOf(failure), 1);
      return sendStatus(res, failure.status, failure.reason, `injected ${failure.status}`);
    }

    try {
      const route = this.route(url.pathname);
      const { def, namespace, name, subresource } = route;
      if (subresource !== undefined && subresource !== 'status') {
        throw new HttpError(404, 'NotFound', `subresource ${subresource} not served by the fake`);
      }
      if (method === 'GET' && name === undefined) {
        if (query.watch === 'true' || query.watch === '1') return this.serveWatch(def, namespace, query, res);
        return sendJson(res, 200, this.listResponse(def, namespace, query));
      }
      if (method === 'GET' && name !== undefined) {
        const obj = this.objects.get(objectKey(def, namespace, name));
        if (!obj) throw notFound(def, name);
        return sendJson(res, 200, obj);
      }
      if (method === 'POST' && name === undefined) {
        return sendJson(res, 201, this.create(def, namespace, body));
      }
      if (method === 'PUT' && name !== undefined) {
        return sendJson(res, 200, this.replace(def, namespace, name, body));
      }
      if (method === 'PATCH' && name !== undefined) {
        return sendJson(res, 200, this.patch(def, namespace, name, contentType, body));
      }
      if (method === 'DELETE' && name !== undefined) {
        const existing = this.objects.get(objectKey(def, namespace, name));
        if (!existing) throw notFound(def, name);
        const pre = (body as { preconditions?: { resourceVersion?: string } } | undefined)?.preconditions;
        if (pre?.resourceVersion && pre.resourceVersion !== existing.metadata?.resourceVersion) {
          throw conflict(def, name);
        }
        return sendJson(res, 200, this.deleteObject(def, namespace, name));
      }
      throw new HttpError(405, 'MethodNotAllowed', `${method} is not supported on ${url.pathname}`);
    } catch (err) {
      if (err instanceof HttpError) return sendStatus(res, err.status, err.reason, err.message);
      throw err;
    }
  }

  private route(pathname: string): {
    def: ResourceDef;
    namespace: string | undefined;
    name: string | undefined;
    subresource: string | undefined;
  } {
    const parts = pathname.split('/').filter((p) => p.length > 0);
    let group: string;
    let version: string;
    let rest: string[];
    if (parts[0] === 'api' && parts.length >= 2) {
      group = '';
      version = parts[1]!;
      rest = parts.slice(2);
    } else if (parts[0] === 'apis' && parts.length >= 3) {
      group = parts[1]!;
      version = parts[2]!;
      rest = parts.slice(3);
    } else {
      throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${pathname})`);
    }
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = decodeURIComponent(rest[1]!);
      rest = rest.slice(2);
    }
    const plural = rest[0];
    const def = plural === undefined ? undefined : this.resources.get(`${group}/${version}/${plural}`);
    if (!def)
      throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${pathname})`);
    if (def.namespaced === false && namespace !== undefined) {
      throw new HttpError(404, 'NotFound', `${def.plural} is not namespaced`);
    }
    const name = rest[1] === undefined ? undefined : decodeURIComponent(rest[1]);
    if (def.namespaced && namespace === undefined && name !== undefined) {
      throw new HttpError(404, 'NotFound', `${def.plural} is namespaced; use /namespaces/<ns>/${def.plural}`);
    }
    return { def, namespace, name, subresource: rest[2] };
  }

  private listResponse(
    def: ResourceDef,
    namespace: string | undefined,
    query: Record<string, string>,
  ): unknown {
    const matches = selectorMatcher(query.labelSelector, query.fieldSelector);
    const items = [...this.objects.values()]
      .filter((o) => this.resourceOf(o) === resourceId(def))
      .filter((o) => namespace === undefined || o.metadata?.namespace === namespace)
      .filter(matches)
      .sort((a, b) =>
        objectKey(def, a.metadata?.namespace, a.metadata?.name ?? '').localeCompare(
          objectKey(def, b.metadata?.namespace, b.metadata?.name ?? ''),
        ),
      );
    return {
      apiVersion: apiVersionOf(def),
      kind: `${def.kind}List`,
      metadata: { resourceVersion: String(this.rv) },
      items,
    };
  }

  private serveWatch(
    def: ResourceDef,
    namespace: string | undefined,
    query: Record<string, string>,
    res: http.ServerResponse,
  ): void {
    const watcher: Watcher = {
      resource: resourceId(def),
      namespace,
      matches: selectorMatcher(query.labelSelector, query.fieldSelector),
      bookmarks: query.allowWatchBookmarks === 'true',
      res,
      apiVersion: apiVersionOf(def),
      kind: def.kind,
    };
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const requested = query.resourceVersion;
    if (requested === undefined || requested === '' || requested === '0') {
      // Start from "now" with synthetic ADDED events for the current state.
      for (const obj of this.objects.values()) {
        if (this.resourceOf(obj) !== watcher.resource) continue;
        if (namespace !== undefined && obj.metadata?.namespace !== namespace) continue;
        if (watcher.matches(obj)) writeEvent(res, 'ADDED', obj);
      }
    } else {
      const from = Number(requested);
      if (!Number.isInteger(from)) {
        writeEvent(res, 'ERROR', statusBody(400, 'BadRequest', `invalid resourceVersion ${requested}`));
        res.end();
        return;
      }
      if (from < this.oldestResumableRv) {
        writeEvent(
          res,
          'ERROR',
          statusBody(410, 'Expired', `too old resource version: ${from} (${this.oldestResumableRv})`),
        );
        res.end();
        return;
      }
      for (const entry of this.history) {
        if (entry.rv > from) this.deliver(watcher, entry);
      }
    }
    this.watchers.add(watcher);
    const timeout = Number(query.timeoutSeconds);
    const timer =
      Number.isFinite(timeout) && timeout > 0
        ? setTimeout(() => {
            this.watchers.delete(watcher);
            res.end();
          }, timeout * 1000)
        : undefined;
    timer?.unref();
    res.on('close', () => {
      if (timer) clearTimeout(timer);
      this.watchers.delete(watcher);
    });
  }

  private deliver(w: Watcher, entry: HistoryEntry): void {
    if (entry.resource !== w.resource) return;
    if (w.namespace !== undefined && entry.object.metadata?.namespace !== w.namespace) return;
    const now = w.matches(entry.object);
    if (entry.type === 'MODIFIED' && entry.previous) {
      const before = w.matches(entry.previous);
      if (before && now) writeEvent(w.res, 'MODIFIED', entry.object);
      else if (!before && now) writeEvent(w.res, 'ADDED', entry.object);
      else if (before && !now) writeEvent(w.res, 'DELETED', entry.object);
      return;
    }
    if (now) writeEvent(w.res, entry.type, entry.object);
  }

  private record(entry: HistoryEntry): void {
    this.history.push(entry);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift()!;
      this.oldestResumableRv = dropped.rv;
    }
    for (const w of this.watchers) this.deliver(w, entry);
  }

  // ---- verbs ----

  private create(def: ResourceDef, namespace: string | undefined, body: unknown): KubeObject {
    const obj = asObject(body);
    const meta = obj.metadata ?? {};
    if (def.namespaced) {
      if (namespace === undefined) throw new HttpError(405, 'MethodNotAllowed', 'create needs a namespace');
      if (meta.namespace !== undefined && meta.namespace !== namespace) {
        throw new HttpError(
          400,
          'BadRequest',
          `the namespace of the provided object does not match the namespace sent on the request`,
        );
      }
    }
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomUUID().slice(0, 5)}`;
    obj.metadata = meta;
    return this.createObject(def, namespace, obj);
  }

  private createObject(def: ResourceDef, namespace: string | undefined, obj: KubeObject): KubeObject {
    const meta = obj.metadata ?? {};
    const name = meta.name;
    if (!name) throw invalid(def, '', 'metadata.name: Required value: name or generateName is required');
    if (!DNS_SUBDOMAIN.test(name) || name.length > 253) {
      throw invalid(def, name, `metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain`);
    }
    const key = objectKey(def, namespace, name);
    if (this.objects.has(key)) {
      throw new HttpError(409, 'AlreadyExists', `${def.plural}${groupSuffix(def)} "${name}" already exists`);
    }
    validate(def, obj);
    this.rv += 1;
    const stored: KubeObject = {
      ...obj,
      apiVersion: apiVersionOf(def),
      kind: def.kind,
      metadata: {
        ...meta,
        ...(def.namespaced ? { namespace } : {}),
        uid: randomUUID(),
        resourceVersion: String(this.rv),
        creationTimestamp: meta.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      },
    };
    if (!def.namespaced) delete stored.metadata!.namespace;
    this.objects.set(key, stored);
    this.record({ rv: this.rv, type: 'ADDED', resource: resourceId(def), object: structuredClone(stored) });
    return structuredClone(stored);
  }

  private replace(def: ResourceDef, namespace: string | undefined, name: string, body: unknown): KubeObject {
    const existing = this.objects.get(objectKey(def, namespace, name));
    if (!existing) throw notFound(def, name);
    const obj = asObject(body);
    if (obj.metadata?.name !== undefined && obj.metadata.name !== name) {
      throw new HttpError(400, 'BadRequest', 'the name of the object does not match the name on the URL');
    }
    const sent = obj.metadata?.resourceVersion;
    if (sent !== undefined && sent !== '' && sent !== existing.metadata?.resourceVersion)
      throw conflict(def, name);
    return this.write(def, namespace, obj, existing);
  }

  private patch(
    def: ResourceDef,
    namespace: string | undefined,
    name: string,
    contentType: string | undefined,
    body: unknown,
  ): KubeObject {
    const existing = this.objects.get(objectKey(def, namespace, name));
    if (!existing) throw notFound(def, name);
    let next: unknown;
    switch (contentType) {
      case 'application/json-patch+json':
        if (!Array.isArray(body)) throw new HttpError(400, 'BadRequest', 'a JSON patch must be an array');
        next = applyJsonPatch(structuredClone(existing), body);
        break;
      case 'application/merge-patch+json':
        next = mergePatch(structuredClone(existing), body);
        break;
      case 'application/strategic-merge-patch+json':
        // The objects we serve have no list merge keys worth honouring: a map merge is what the
        // real server does for maps (labels, annotations, spec/status fields), lists are replaced.
        if (!def.group) next = mergePatch(structuredClone(existing), body);
        else
          throw new HttpError(
            415,
            'UnsupportedMediaType',
            'strategic merge patch is not supported for custom resources',
          );
        break;
      default:
        throw new HttpError(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format: ${contentType}`,
        );
    }
    const obj = asObject(next);
    const sent = (body as KubeObject | undefined)?.metadata?.resourceVersion;
    if (typeof sent === 'string' && sent !== existing.metadata?.resourceVersion) throw conflict(def, name);
    return this.write(def, namespace, obj, existing);
  }

  private write(
    def: ResourceDef,
    namespace: string | undefined,
    obj: KubeObject,
    existing: KubeObject,
  ): KubeObject {
    validate(def, obj);
    const stored: KubeObject = {
      ...obj,
      apiVersion: apiVersionOf(def),
      kind: def.kind,
      metadata: {
        ...obj.metadata,
        name: existing.metadata?.name,
        ...(def.namespaced ? { namespace } : {}),
        uid: existing.metadata?.uid,
        creationTimestamp: existing.metadata?.creationTimestamp,
      },
    };
    // A write that changes nothing does not bump the resourceVersion (as the real server).
    const comparable = (o: KubeObject) =>
      JSON.stringify({ ...o, metadata: { ...o.metadata, resourceVersion: '' } });
    if (comparable(stored) === comparable(existing)) return structuredClone(existing);
    this.rv += 1;
    stored.metadata!.resourceVersion = String(this.rv);
    this.objects.set(objectKey(def, namespace, existing.metadata?.name ?? ''), stored);
    this.record({
      rv: this.rv,
      type: 'MODIFIED',
      resource: resourceId(def),
      object: structuredClone(stored),
      previous: structuredClone(existing),
    });
    return structuredClone(stored);
  }

  private deleteObject(def: ResourceDef, namespace: string | undefined, name: string): KubeObject {
    const key = objectKey(def, namespace, name);
    const existing = this.objects.get(key);
    if (!existing) throw notFound(def, name);
    this.objects.delete(key);
    this.rv += 1;
    const gone = structuredClone(existing);
    gone.metadata!.resourceVersion = String(this.rv);
    this.record({ rv: this.rv, type: 'DELETED', resource: resourceId(def), object: gone });
    return structuredClone(gone);
  }

  private def(resource: string): ResourceDef {
    // Accepts "pods", "leases.coordination.k8s.io" or "group/version/plural".
    for (const def of this.resources.values()) {
      if (resourceId(def) === resource) return def;
      if (def.group === '' && def.plural === resource) return def;
      if (`${def.plural}.${def.group}` === resource) return def;
    }
    throw new Error(`resource ${resource} is not registered with the fake API server`);
  }

  private resourceOf(obj: KubeObject): string {
    const [groupOrVersion, version] = (obj.apiVersion ?? '').split('/');
    const group = version === undefined ? '' : groupOrVersion!;
    const v = version ?? groupOrVersion!;
    for (const def of this.resources.values()) {
      if (def.group === group && def.version === v && def.kind === obj.kind) return resourceId(def);
    }
    return '';
  }
}

// ---- helpers ----

function resourceId(def: ResourceDef): string {
  return `${def.group}/${def.version}/${def.plural}`;
}

function apiVersionOf(def: ResourceDef): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

function groupSuffix(def: ResourceDef): string {
  return def.group ? `.${def.group}` : '';
}

function objectKey(def: ResourceDef, namespace: string | undefined, name: string): string {
  return `${resourceId(def)}|${def.namespaced ? (namespace ?? '') : ''}|${name}`;
}

function asObject(body: unknown): KubeObject {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'BadRequest', 'the request body must be a JSON object');
  }
  return body as KubeObject;
}

function notFound(def: ResourceDef, name: string): HttpError {
  return new HttpError(404, 'NotFound', `${def.plural}${groupSuffix(def)} "${name}" not found`);
}

function conflict(def: ResourceDef, name: string): HttpError {
  return new HttpError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${def.plural}${groupSuffix(def)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
  );
}

function invalid(def: ResourceDef, name: string, detail: string): HttpError {
  return new HttpError(422, 'Invalid', `${def.kind} "${name}" is invalid: ${detail}`);
}

/** The few server-side validations whose absence would let client bugs through. */
function validate(def: ResourceDef, obj: KubeObject): void {
  const name = obj.metadata?.name ?? '';
  if (def.group === 'coordination.k8s.io' && def.kind === 'Lease') {
    const spec = (obj.spec ?? {}) as Record<string, unknown>;
    for (const field of ['acquireTime', 'renewTime']) {
      const v = spec[field];
      // metav1.MicroTime only parses RFC 3339 with exactly six fractional digits.
      if (v !== undefined && v !== null && (typeof v !== 'string' || !MICROTIME.test(v))) {
        throw new HttpError(
          400,
          'BadRequest',
          `Lease in version "v1" cannot be handled as a Lease: spec.${field}: parsing time ${JSON.stringify(v)} as MicroTime failed`,
        );
      }
    }
    const d = spec.leaseDurationSeconds;
    if (d !== undefined && (!Number.isInteger(d) || (d as number) <= 0)) {
      throw invalid(def, name, 'spec.leaseDurationSeconds: Invalid value: must be greater than 0');
    }
  }
  if (def.group === '' && def.kind === 'Event') {
    const involved = (obj.involvedObject ?? {}) as Record<string, unknown>;
    const ns = obj.metadata?.namespace;
    if (!involved.kind || !involved.name) throw invalid(def, name, 'involvedObject: Required value');
    if (!involved.namespace) {
      if (ns !== undefined && ns !== '' && ns !== 'default') {
        throw invalid(
          def,
          name,
          'involvedObject.namespace: Invalid value: "": does not match event.namespace',
        );
      }
    } else if (involved.namespace !== ns) {
      throw invalid(def, name, `involvedObject.namespace: Invalid value: does not match event.namespace`);
    }
    if (!obj.reason) throw invalid(def, name, 'reason: Required value');
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function statusBody(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function sendStatus(res: http.ServerResponse, code: number, reason: string, message: string): void {
  sendJson(res, code, statusBody(code, reason, message));
}

function writeEvent(res: http.ServerResponse, type: string, object: unknown): void {
  if (!res.destroyed && !res.writableEnded) res.write(`${JSON.stringify({ type, object })}\n`);
}

// ---- selectors ----

type Matcher = (obj: KubeObject) => boolean;

export function selectorMatcher(labelSelector?: string, fieldSelector?: string): Matcher {
  const label = parseLabelSelector(labelSelector ?? '');
  const field = parseFieldSelector(fieldSelector ?? '');
  return (obj) => label(obj.metadata?.labels ?? {}) && field(obj);
}

function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur);
  return out.map((p) => p.trim()).filter((p) => p.length > 0);
}

function parseLabelSelector(selector: string): (labels: Record<string, string>) => boolean {
  const reqs = splitTopLevel(selector).map((term): ((l: Record<string, string>) => boolean) => {
    let m = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    if (m) {
      const key = m[1]!;
      const values = m[3]!.split(',').map((v) => v.trim());
      return m[2] === 'in'
        ? (l) => l[key] !== undefined && values.includes(l[key]!)
        : (l) => l[key] === undefined || !values.includes(l[key]!);
    }
    m = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(term);
    if (m) {
      const key = m[1]!;
      const value = m[3]!;
      return m[2] === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
    }
    m = /^!(\S+)$/.exec(term);
    if (m) {
      const key = m[1]!;
      return (l) => l[key] === undefined;
    }
    if (/^\S+$/.test(term)) return (l) => l[term] !== undefined;
    throw new HttpError(400, 'BadRequest', `unable to parse requirement: ${term}`);
  });
  return (labels) => reqs.every((r) => r(labels));
}

function parseFieldSelector(selector: string): Matcher {
  const reqs = splitTopLevel(selector).map((term): Matcher => {
    const m = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(term);
    if (!m) throw new HttpError(400, 'BadRequest', `invalid field selector: ${term}`);
    const path = m[1]!.split('.');
    const value = m[3]!;
    const get = (obj: KubeObject): string => {
      let cur: unknown = obj;
      for (const p of path)
        cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[p] : undefined;
      return cur === undefined || cur === null ? '' : String(cur);
    };
    return m[2] === '!=' ? (o) => get(o) !== value : (o) => get(o) === value;
  });
  return (obj) => reqs.every((r) => r(obj));
}

// ---- patches ----

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface JsonPatchOp {
  op: string;
  path: string;
  value?: unknown;
  from?: string;
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new HttpError(422, 'Invalid', `invalid JSON pointer ${path}`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** RFC 6902 JSON patch. */
export function applyJsonPatch(doc: unknown, ops: unknown[]): unknown {
  let root = doc;
  const parentOf = (parts: string[]): [Record<string, unknown> | unknown[], string] => {
    let cur: unknown = root;
    for (const p of parts.slice(0, -1)) {
      if (cur === null || typeof cur !== 'object')
        throw new HttpError(422, 'Invalid', `path not found: /${parts.join('/')}`);
      cur = (cur as Record<string, unknown>)[p];
    }
    if (cur === null || typeof cur !== 'object')
      throw new HttpError(422, 'Invalid', `path not found: /${parts.join('/')}`);
    return [cur as Record<string, unknown>, parts[parts.length - 1]!];
  };
  const read = (parts: string[]): unknown => {
    let cur: unknown = root;
    for (const p of parts) {
      if (cur === null || typeof cur !== 'object' || !(p in (cur as object))) {
        throw new HttpError(422, 'Invalid', `path not found: /${parts.join('/')}`);
      }
      cur = (cur as Record<string, unknown>)[p];
    }
    return cur;
  };
  const remove = (parts: string[]): unknown => {
    const value = read(parts);
    const [parent, key] = parentOf(parts);
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key];
    return value;
  };
  const add = (parts: string[], value: unknown): void => {
    if (parts.length === 0) {
      root = value;
      return;
    }
    const [parent, key] = parentOf(parts);
    if (Array.isArray(parent)) {
      const idx = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(idx) || idx < 0 || idx > parent.length)
        throw new HttpError(422, 'Invalid', `bad index ${key}`);
      parent.splice(idx, 0, value);
    } else parent[key] = value;
  };
  for (const raw of ops) {
    const op = raw as JsonPatchOp;
    const parts = pointer(op.path);
    switch (op.op) {
      case 'add':
        add(parts, structuredClone(op.value));
        break;
      case 'remove':
        remove(parts);
        break;
      case 'replace':
        read(parts);
        if (parts.length === 0) root = structuredClone(op.value);
        else {
          const [parent, key] = parentOf(parts);
          (parent as Record<string, unknown>)[key] = structuredClone(op.value);
        }
        break;
      case 'move':
        add(parts, remove(pointer(op.from ?? '')));
        break;
      case 'copy':
        add(parts, structuredClone(read(pointer(op.from ?? ''))));
        break;
      case 'test':
        if (JSON.stringify(read(parts)) !== JSON.stringify(op.value)) {
          throw new HttpError(422, 'Invalid', `the test operation on ${op.path} failed`);
        }
        break;
      default:
        throw new HttpError(422, 'Invalid', `unknown JSON patch operation ${String(op.op)}`);
    }
  }
  return root;
}
