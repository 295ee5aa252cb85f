/**
 * A throwaway PKI for the mTLS tests, made at run time with the `openssl` command line tool
 * (P-256 keys, valid two days): two CAs, a server certificate for 127.0.0.1/localhost and client
 * certificates with chosen subjects and SANs.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface CertFiles {
  cert: string;
  key: string;
}

export interface Pem {
  cert: Buffer;
  key: Buffer;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('the mTLS tests need the openssl command line tool (Debian: apt-get install openssl)');
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA named `name` in `dir`. */
export function makeCa(dir: string, name: string): CertFiles {
  const files = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  openssl(
    ['req', '-x509', ...KEY, '-keyout', files.key, '-out', files.cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  return files;
}

/**
 * A leaf certificate signed by `ca`: `subject` in openssl's form (`/O=acme/CN=client-a`), `sans`
 * in x509v3 form (`DNS:x`, `IP:127.0.0.1`, `URI:spiffe://...`), `usage` serverAuth or clientAuth,
 * valid for `days` from now (-1: expired since yesterday).
 */
export function makeLeaf(dir: string, name: string, ca: CertFiles, subject: string, sans: string[], usage: 'serverAuth' | 'clientAuth', days = 2): CertFiles {
  const files = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  openssl(['req', ...KEY, '-keyout', files.key, '-out', csr, '-subj', subject], dir);
  writeFileSync(ext, `${sans.length > 0 ? `subjectAltName=${sans.join(',')}\n` : ''}extendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', files.cert, '-days', String(days), '-extfile', ext], dir);
  return files;
}

export function pem(files: CertFiles): Pem {
  return { cert: readFileSync(files.cert), key: readFileSync(files.key) };
}

export interface TestPki {
  ca: CertFiles;
  server: CertFiles;
  /** CN=client-a,O=acme, SAN DNS:client-a.internal (from the CA). */
  clientA: Pem;
  /** CN=client-b,O=other, SAN DNS:client-b.internal (from the CA). */
  clientB: Pem;
  /** CN=client-s,O=other, SAN URI:spiffe://acme/client-s (from the CA). */
  clientS: Pem;
  /** CN=client-a,O=acme, from another CA. */
  foreign: Pem;
  caPem: Buffer;
}

/** The manager's `[auth.mtls]` table on `pki`: its server certificate and key, its CA for clients, then `more` lines (allow-lists). */
export function mtlsToml(pki: TestPki, more = ''): string {
  return `[auth.mtls]
server_cert = ${JSON.stringify(pki.server.cert)}
server_key = ${JSON.stringify(pki.server.key)}
client_ca = ${JSON.stringify(pki.ca.cert)}
${more}`;
}

export function makeTestPki(dir: string): TestPki {
  const ca = makeCa(dir, 'ca');
  const other = makeCa(dir, 'other-ca');
  const server = makeLeaf(dir, 'server', ca, '/CN=localhost', ['IP:127.0.0.1', 'DNS:localhost'], 'serverAuth');
  return {
    ca,
    server,
    clientA: pem(makeLeaf(dir, 'client-a', ca, '/O=acme/CN=client-a', ['DNS:client-a.internal'], 'clientAuth')),
    clientB: pem(makeLeaf(dir, 'client-b', ca, '/O=other/CN=client-b', ['DNS:client-b.internal'], 'clientAuth')),
    clientS: pem(makeLeaf(dir, 'client-s', ca, '/O=other/CN=client-s', ['URI:spiffe://acme/client-s'], 'clientAuth')),
    foreign: pem(makeLeaf(dir, 'foreign', other, '/O=acme/CN=client-a', ['DNS:client-a.internal'], 'clientAuth')),
    caPem: readFileSync(ca.cert),
  };
}
