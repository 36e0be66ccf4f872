// Child-process probe: builds the Azure provider exactly as the daemon does (loadConfig +
// createProvider from the environment, production credential) and prints describeNode() and
// listInterfaces() as JSON. Lets tests prove NODE_EXTRA_CA_CERTS and managed identity work
// end to end in a fresh process.
import { loadConfig } from '../../src/ipam-daemon/config.ts';
import { createProvider } from '../../src/ipam-daemon/provider-factory.ts';

const config = loadConfig(process.env);
const provider = await createProvider(config, { onCall: () => {} });
try {
  const node = await provider.describeNode();
  const interfaces = await provider.listInterfaces();
  process.stdout.write(`${JSON.stringify({ node, interfaces })}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(
    `${err instanceof Error ? `${err.name}: ${err.message} ${String((err as { cause?: unknown }).cause ?? '')}` : String(err)}\n`,
  );
  process.exit(1);
}
