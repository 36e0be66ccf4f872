// A fake of the Azure Instance Metadata Service (http://169.254.169.254) on 127.0.0.1, answering
// as the real one does for what the daemon reads:
//   GET /metadata/instance?api-version=...   (header Metadata: true)  -> { compute, network }
//   GET /metadata/instance/network?api-version=...                      -> { interface: [...] }
//   GET /metadata/identity/oauth2/token?api-version=...&resource=...    -> a managed-identity token
// Like IMDS it answers 400 without the Metadata: true header, without api-version, or when the
// request carries X-Forwarded-For (IMDS refuses proxied requests). The document comes from a
// callback, so it can be a live view of the ARM fake (FakeArmServer.instanceMetadata).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AzureInstanceMetadata } from './arm-server.ts';

export interface FakeAzureImdsOptions {
  metadata: () => AzureInstanceMetadata;
  /** Token handed out by the managed-identity endpoint (default 'fake-msi-token'). */
  accessToken?: string;
}

export interface FakeAzureImds {
  /** Base URL, e.g. http://127.0.0.1:40123 (what the provider's imdsEndpoint takes). */
  url: string;
  requests: { path: string; status: number }[];
  close(): Promise<void>;
}

export async function startFakeAzureImds(opts: FakeAzureImdsOptions): Promise<FakeAzureImds> {
  const requests: { path: string; status: number }[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://imds');
    const send = (status: number, body: unknown) => {
      requests.push({ path: url.pathname, status });
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(text),
      });
      res.end(text);
    };
    if (req.headers['x-forwarded-for'] !== undefined) {
      return send(400, { error: 'Bad request. X-Forwarded-For header is not allowed.' });
    }
    if (req.headers.metadata !== 'true') {
      return send(400, { error: 'Bad request. Required metadata header not specified' });
    }
    if (!url.searchParams.get('api-version')) {
      return send(400, {
        error:
          'Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds',
        newest_versions: ['2023-07-01', '2021-02-01'],
      });
    }
    if (req.method !== 'GET') return send(405, { error: 'Method not allowed' });
    const doc = opts.metadata();
    switch (url.pathname.replace(/\/+$/, '')) {
      case '/metadata/instance':
        return send(200, doc);
      case '/metadata/instance/compute':
        return send(200, doc.compute);
      case '/metadata/instance/network':
        return send(200, doc.network);
      case '/metadata/identity/oauth2/token': {
        const resource = url.searchParams.get('resource');
        if (!resource)
          return send(400, {
            error: 'invalid_request',
            error_description: 'Required query variable resource is missing',
          });
        const now = Math.floor(Date.now() / 1000);
        return send(200, {
          access_token: opts.accessToken ?? 'fake-msi-token',
          client_id: '00000000-0000-0000-0000-000000000001',
          expires_in: '3599',
          expires_on: String(now + 3599),
          ext_expires_in: '3599',
          not_before: String(now),
          resource,
          token_type: 'Bearer',
        });
      }
      default:
        return send(404, { error: 'Not found' });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
