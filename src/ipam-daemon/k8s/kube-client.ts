// Builds the Kubernetes client configuration: in-cluster (service account token + CA, as a pod
// gets them) when KUBERNETES_SERVICE_HOST is set, else KUBECONFIG / ~/.kube/config.
import { existsSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';

export interface KubeConfigSource {
  env?: Readonly<Record<string, string | undefined>>;
  /** Prefix for the service account files (tests point it at a temp dir). */
  serviceAccountRoot?: string;
}

const TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export function loadKubeConfig(source: KubeConfigSource = {}): KubeConfig {
  const env = source.env ?? process.env;
  const kc = new KubeConfig();
  const prefix = source.serviceAccountRoot ?? '';
  if (env.KUBERNETES_SERVICE_HOST) {
    if (!env.KUBERNETES_SERVICE_PORT) {
      throw new Error(
        'KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not; accepted: a TCP port',
      );
    }
    if (!existsSync(`${prefix}${TOKEN_PATH}`)) {
      throw new Error(
        `in-cluster config: no service account token at ${prefix}${TOKEN_PATH} (automountServiceAccountToken must be true)`,
      );
    }
    // loadFromCluster reads the host and port from process.env; hand it ours.
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = env.KUBERNETES_SERVICE_HOST;
    process.env.KUBERNETES_SERVICE_PORT = env.KUBERNETES_SERVICE_PORT;
    try {
      kc.loadFromCluster(prefix);
    } finally {
      restore('KUBERNETES_SERVICE_HOST', saved.host);
      restore('KUBERNETES_SERVICE_PORT', saved.port);
    }
    return kc;
  }
  if (env.KUBECONFIG) {
    const first = env.KUBECONFIG.split(':').find((p) => p.length > 0);
    if (!first || !existsSync(first)) {
      throw new Error(
        `KUBECONFIG=${JSON.stringify(env.KUBECONFIG)}: file not found; accepted: a path to a kubeconfig file`,
      );
    }
    kc.loadFromFile(first);
    return kc;
  }
  kc.loadFromDefault();
  if (!kc.getCurrentCluster()) {
    throw new Error('no Kubernetes configuration: run in a pod, or set KUBECONFIG to a kubeconfig file');
  }
  return kc;
}

function restore(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}
