// The pool as the socket API and the CLI show it (pure: datastore + node + the current plan).

import type { NodeInfo } from '../../providers/types.ts';
import type { PoolStatus } from '../api-types.ts';
import type { Datastore } from '../datastore.ts';
import type { Plan } from '../pool-engine.ts';

export function poolStatus(ds: Datastore, node: NodeInfo, p: Plan): PoolStatus {
  const interfaces = [...ds.interfaces.values()]
    .sort((a, b) => a.deviceIndex - b.deviceIndex)
    .map((i) => {
      const states = ds.ipsOf(i.id);
      const assigned = states.filter((s) => s.state === 'assigned').length;
      const cooling = states.filter((s) => s.state === 'cooling').length;
      const free = states.filter((s) => s.state === 'free').length;
      const lost = states.filter((s) => s.lost).length;
      return {
        interfaceId: i.id,
        mac: i.mac,
        deviceIndex: i.deviceIndex,
        subnetId: i.subnetId,
        total: states.length,
        assigned,
        cooling,
        free,
        lost,
        ...(i.gone ? { gone: true } : {}),
        ips: states.map((s) => ({ ip: s.ip, state: s.state, ...(s.lost ? { lost: true } : {}) })),
      };
    });
  return {
    instanceId: node.instanceId,
    instanceType: node.instanceType,
    maxPods: p.maxPods,
    total: interfaces.reduce((n, i) => n + i.total, 0),
    assigned: interfaces.reduce((n, i) => n + i.assigned, 0),
    cooling: interfaces.reduce((n, i) => n + i.cooling, 0),
    free: interfaces.reduce((n, i) => n + i.free, 0),
    lost: interfaces.reduce((n, i) => n + i.lost, 0),
    plan: p.why,
    noIpReason: p.noIp ? `${p.noIp.reason}: ${p.noIp.message}` : null,
    interfaces,
  };
}
