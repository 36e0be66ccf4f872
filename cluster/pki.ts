// The cluster test bed's certificates, made with openssl: one CA signing the API server's serving
// certificate and every client (admin, controller-manager, scheduler, each kubelet, kube-proxy),
// plus the ServiceAccount token signing key. Files are written once per directory and reused.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const pexec = promisify(execFile);

async function openssl(args: string[]): Promise<void> {
  try {
    await pexec('openssl', args);
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.trim() || err.message}`);
  }
}

export interface CertFiles {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  ca: CertFiles;
  /** ServiceAccount token signing key pair (RSA). */
  saKey: string;
  saPub: string;
  /** Issues (or reuses) a certificate signed by the CA. */
  issue(name: string, spec: CertSpec): Promise<CertFiles>;
}

export interface CertSpec {
  cn: string;
  org?: string;
  /** Subject alternative names for serving certificates: IPs and DNS names. */
  ips?: string[];
  dns?: string[];
}

export async function ensurePki(dir: string): Promise<Pki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  if (!existsSync(ca.cert)) {
    await openssl(['genrsa', '-out', ca.key, '2048']);
    await openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      ca.key,
      '-subj',
      '/CN=vpc-ipam-testbed-ca',
      '-days',
      '3650',
      '-out',
      ca.cert,
    ]);
  }
  const saKey = join(dir, 'sa.key');
  const saPub = join(dir, 'sa.pub');
  if (!existsSync(saPub)) {
    await openssl(['genrsa', '-out', saKey, '2048']);
    await openssl(['rsa', '-in', saKey, '-pubout', '-out', saPub]);
  }
  const issue = async (name: string, spec: CertSpec): Promise<CertFiles> => {
    const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    if (existsSync(files.cert)) return files;
    const subject = `${spec.org ? `/O=${spec.org}` : ''}/CN=${spec.cn}`;
    const san = [...(spec.ips ?? []).map((i) => `IP:${i}`), ...(spec.dns ?? []).map((d) => `DNS:${d}`)];
    const ext = join(dir, `${name}.ext`);
    writeFileSync(
      ext,
      [
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${san.length > 0 ? 'serverAuth,clientAuth' : 'clientAuth'}`,
        ...(san.length > 0 ? [`subjectAltName=${san.join(',')}`] : []),
        '',
      ].join('\n'),
    );
    const csr = join(dir, `${name}.csr`);
    await openssl(['genrsa', '-out', files.key, '2048']);
    await openssl(['req', '-new', '-key', files.key, '-subj', subject, '-out', csr]);
    await openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      '-CAcreateserial',
      '-days',
      '3650',
      '-extfile',
      ext,
      '-out',
      files.cert,
    ]);
    return files;
  };
  return { dir, ca, saKey, saPub, issue };
}

/** A kubeconfig for one client certificate. */
export function writeKubeconfig(path: string, server: string, caCert: string, client: CertFiles): void {
  writeFileSync(
    path,
    JSON.stringify(
      {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'testbed', cluster: { server, 'certificate-authority': caCert } }],
        users: [{ name: 'user', user: { 'client-certificate': client.cert, 'client-key': client.key } }],
        contexts: [{ name: 'testbed', context: { cluster: 'testbed', user: 'user' } }],
        'current-context': 'testbed',
      },
      null,
      2,
    ),
    { mode: 0o600 },
  );
}
