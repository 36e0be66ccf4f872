// A throwaway certificate authority and server certificate for the local ARM fake, made with the
// openssl CLI at test time (Node can verify X.509 but not issue it). The Azure SDK refuses to send
// bearer tokens over plain http, so the fake must speak HTTPS and the client must trust this CA:
// child processes through NODE_EXTRA_CA_CERTS=<caPath>, the test process itself through
// trustCaInProcess() (tls.setDefaultCACertificates, the run-time twin of that variable).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificates {
  dir: string;
  /** PEM file of the CA: what NODE_EXTRA_CA_CERTS should point at. */
  caPath: string;
  caPem: string;
  /** Server certificate (SAN 127.0.0.1, localhost) and key, signed by the CA. */
  certPem: string;
  keyPem: string;
  cleanup(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 20_000 });
  } catch (err) {
    const e = err as { code?: string; stderr?: string };
    if (e.code === 'ENOENT')
      throw new Error('openssl is not installed: the ARM fake needs it to make its TLS certificate');
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? String(err)}`);
  }
}

export async function createTestCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), 'vpc-ipam-arm-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=vpc-ipam test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  await openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  await writeFile(
    join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n',
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.pem',
      '-days',
      '2',
      '-extfile',
      'ext.cnf',
    ],
    dir,
  );
  const [caPem, certPem, keyPem] = await Promise.all(
    ['ca.pem', 'server.pem', 'server.key'].map((f) => readFile(join(dir, f), 'utf8')),
  );
  return {
    dir,
    caPath: join(dir, 'ca.pem'),
    caPem: caPem!,
    certPem: certPem!,
    keyPem: keyPem!,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Trust the CA in this process too (Node >= 24.5), on top of the bundled roots. */
export function trustCaInProcess(caPem: string): void {
  const current = tls.getCACertificates('default');
  if (!current.includes(caPem)) tls.setDefaultCACertificates([...current, caPem]);
}
