// ANNOTATE_POD_IP (the AWS VPC CNI's knob): write the pod's IP into its annotation
// vpc.amazonaws.com/pod-ips as soon as the IP is handed out, before the kubelet reports
// status.podIP (policy engines such as Calico read it to program rules early). Opt-in: it needs
// `patch` on pods, which the chart grants only when it is on. Never on the data path: the patch
// runs after the answer, a failure is logged and not retried (the kubelet's status follows anyway).
import { type CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';

export const POD_IPS_ANNOTATION = 'vpc.amazonaws.com/pod-ips';

export interface AllocatedPod {
  ip: string;
  podNamespace?: string;
  podName?: string;
}

export class PodIpAnnotator {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly opts: { core: CoreV1Api; logger: Logger };

  constructor(opts: { core: CoreV1Api; logger: Logger }) {
    this.opts = opts;
  }

  /** The daemon's 'allocated' event. */
  onAllocated(a: AllocatedPod): void {
    if (!a.podNamespace || !a.podName) return; // not called by a runtime for a Kubernetes pod
    const p = this.patch(a.podNamespace, a.podName, a.ip).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async patch(namespace: string, name: string, ip: string): Promise<void> {
    try {
      await this.opts.core.patchNamespacedPod(
        { name, namespace, body: { metadata: { annotations: { [POD_IPS_ANNOTATION]: ip } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (err) {
      this.opts.logger.warn(
        { err: String(err), pod: `${namespace}/${name}`, ip },
        'could not annotate the pod with its IP',
      );
    }
  }

  /** Waits for the patches in flight (shutdown, tests). */
  async flush(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }
}
