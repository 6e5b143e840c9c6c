import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** PEM files of one certificate and its key. */
export interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TestPki {
  readonly caFile: string;
  /** For every service: server and client auth, valid for 127.0.0.1 and localhost. */
  readonly service: CertificateFiles;
  /** A certificate of the same shape from another CA, which the cluster must refuse. */
  readonly stranger: CertificateFiles & { readonly caFile: string };
}

/** A CA, and a leaf certificate it signs for `name` with the extensions mutual TLS on loopback needs. */
async function issue(dir: string, name: string, ca: { caFile: string; caKeyFile: string }): Promise<CertificateFiles> {
  const keyFile = path.join(dir, `${name}.key`);
  const csrFile = path.join(dir, `${name}.csr`);
  const certFile = path.join(dir, `${name}.pem`);
  const extFile = path.join(dir, `${name}.ext`);
  await writeFile(
    extFile,
    ['subjectAltName = IP:127.0.0.1, DNS:localhost', 'extendedKeyUsage = serverAuth, clientAuth', 'basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature, keyEncipherment', ''].join('\n'),
  );
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${name}`]);
  await run('openssl', ['x509', '-req', '-in', csrFile, '-CA', ca.caFile, '-CAkey', ca.caKeyFile, '-set_serial', String(Date.now()), '-days', '2', '-extfile', extFile, '-out', certFile]);
  return { certFile, keyFile };
}

async function certificateAuthority(dir: string, name: string): Promise<{ caFile: string; caKeyFile: string }> {
  const caFile = path.join(dir, `${name}.pem`);
  const caKeyFile = path.join(dir, `${name}.key`);
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints = critical, CA:TRUE', '-addext', 'keyUsage = critical, keyCertSign, cRLSign',
    '-keyout', caKeyFile, '-out', caFile,
  ]);
  return { caFile, caKeyFile };
}

/** Generates, with Debian's openssl CLI, the certificates a TLS test needs into `dir`. */
export async function writeTestPki(dir: string): Promise<TestPki> {
  const ca = await certificateAuthority(dir, 'pipeserve-test-ca');
  const otherCa = await certificateAuthority(dir, 'stranger-ca');
  const service = await issue(dir, 'service', ca);
  const stranger = await issue(dir, 'stranger', otherCa);
  return { caFile: ca.caFile, service, stranger: { ...stranger, caFile: otherCa.caFile } };
}
