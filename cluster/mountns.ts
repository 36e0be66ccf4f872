// A mount namespace (optionally inside a network namespace) held open by a `sleep` process, so
// several programs can share one private view of the filesystem: bind mounts made in it are not
// seen by the root namespace (propagation slave), and every program is started in it with
// `nsenter --target <holder>`. The cluster test bed gives each node one, so kubelet, containerd
// and the pods' hostPath volumes see that node's own /etc/cni/net.d, /opt/cni/bin, /var/lib/kubelet...
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { run } from '../test/helpers/netns.ts';
import { type Child, startChild, stopProcess } from './proc.ts';

export class MountNamespace {
  readonly name: string;
  private readonly holder: ChildProcess;
  private readonly withNet: boolean;

  private constructor(name: string, holder: ChildProcess, withNet: boolean) {
    this.name = name;
    this.holder = holder;
    this.withNet = withNet;
  }

  /** Starts the holder; netnsPath puts it (and everything started in it) in that network namespace. */
  static async create(name: string, netnsPath?: string): Promise<MountNamespace> {
    const args = [
      ...(netnsPath ? [`--net=${netnsPath}`] : []),
      'unshare',
      '--mount',
      '--propagation',
      'slave',
    ];
    const holder = spawn('nsenter', [...args, 'sleep', 'infinity'], { stdio: 'ignore' });
    const ns = new MountNamespace(name, holder, netnsPath !== undefined);
    // the holder has unshared once its mount namespace differs from ours
    const self = (await run('readlink', ['/proc/self/ns/mnt'])).stdout.trim();
    for (let i = 0; i < 100; i++) {
      if (holder.exitCode !== null)
        throw new Error(`mount namespace holder for ${name} exited ${holder.exitCode}`);
      const theirs = await run('readlink', [`/proc/${holder.pid}/ns/mnt`]).catch(() => ({ stdout: self }));
      if (theirs.stdout.trim() !== self) return ns;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`mount namespace holder for ${name} did not unshare`);
  }

  get pid(): number {
    return this.holder.pid ?? 0;
  }

  /** nsenter arguments that run a program inside this namespace (and its netns). */
  enterArgs(): string[] {
    return ['--target', String(this.pid), '--mount', ...(this.withNet ? ['--net'] : [])];
  }

  /** Bind-mounts source over target inside the namespace (both are created when missing). */
  async bind(source: string, target: string): Promise<void> {
    mkdirSync(source, { recursive: true });
    mkdirSync(target, { recursive: true });
    await run('nsenter', [...this.enterArgs(), 'mount', '--bind', source, target]);
  }

  /** Bind-mounts a file over a file (e.g. /etc/hosts). */
  async bindFile(source: string, target: string): Promise<void> {
    await run('nsenter', [...this.enterArgs(), 'mount', '--bind', source, target]);
  }

  exec(file: string, args: string[], input?: string) {
    return run('nsenter', [...this.enterArgs(), file, ...args], input);
  }

  start(name: string, file: string, args: string[], log: string, env?: NodeJS.ProcessEnv): Child {
    return startChild(name, 'nsenter', [...this.enterArgs(), file, ...args], log, env);
  }

  close(): Promise<void> {
    return stopProcess(this.holder, 1000);
  }
}
