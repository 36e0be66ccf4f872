// Time limits of the e2e helpers and suites stretch by VPC_IPAM_E2E_SLOWDOWN: the VM runner sets it
// (qemu TCG runs every instruction emulated, many times slower); elsewhere it is 1. Only limits
// stretch: a negative check still waits for the network, never for a slow process start.
export const SLOWDOWN = Math.max(1, Number(process.env.VPC_IPAM_E2E_SLOWDOWN ?? '1') || 1);

export function scaled(ms: number): number {
  return ms * SLOWDOWN;
}
