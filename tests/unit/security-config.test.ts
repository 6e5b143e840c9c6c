import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, parseConfig, type AppConfig } from '../../shared/config';
import { useTransport } from '../../shared/grpc/channel';
import { writeTestPki, type TestPki } from '../support/test-certificates';

const ROOT = path.resolve(__dirname, '../..');
const shipped = (): Record<string, unknown> => JSON.parse(readFileSync(path.join(ROOT, 'config.json'), 'utf8')) as Record<string, unknown>;
const withSecurity = (security: unknown): Record<string, unknown> => ({ ...shipped(), security });
const SECRET = 'a-cluster-secret-of-32-characters';

describe('config.json security', () => {
  it('is off unless configured: no secret, no TLS', () => {
    expect(parseConfig(shipped(), { baseDir: ROOT }).security).toEqual({ clusterSecret: undefined, tls: undefined });
  });

  it('takes the secret and the three TLS files from the file, relative paths from config.json\'s folder', () => {
    const config = parseConfig(withSecurity({ cluster_secret: SECRET, tls: { ca_file: 'certs/ca.pem', cert_file: '/etc/tls/node.pem', key_file: 'certs/node.key' } }), { baseDir: '/srv/pipeserve' });
    expect(config.security).toEqual({ clusterSecret: SECRET, tls: { caFile: '/srv/pipeserve/certs/ca.pem', certFile: '/etc/tls/node.pem', keyFile: '/srv/pipeserve/certs/node.key' } });
  });

  it('CLUSTER_SECRET and TLS_CA_FILE / TLS_CERT_FILE / TLS_KEY_FILE override the file, or configure it alone', () => {
    const env = { CLUSTER_SECRET: `${SECRET}-env`, TLS_CA_FILE: '/env/ca.pem', TLS_CERT_FILE: '/env/cert.pem', TLS_KEY_FILE: '/env/key.pem' };
    expect(parseConfig(withSecurity({ cluster_secret: SECRET, tls: { ca_file: 'a', cert_file: 'b', key_file: 'c' } }), { baseDir: ROOT, env }).security).toEqual({
      clusterSecret: `${SECRET}-env`,
      tls: { caFile: '/env/ca.pem', certFile: '/env/cert.pem', keyFile: '/env/key.pem' },
    });
    expect(parseConfig(shipped(), { baseDir: ROOT, env }).security.tls?.keyFile).toBe('/env/key.pem');
    expect(parseConfig(withSecurity({ tls: { ca_file: '/f/ca.pem', cert_file: '/f/cert.pem' } }), { baseDir: ROOT, env: { TLS_KEY_FILE: '/env/key.pem' } }).security.tls).toEqual({
      caFile: '/f/ca.pem',
      certFile: '/f/cert.pem',
      keyFile: '/env/key.pem',
    });
  });

  it.each<[string, unknown, Record<string, string>, RegExp]>([
    ['security not an object', 'on', {}, /^config security: must be an object$/],
    ['tls not an object', { tls: true }, {}, /^config security\.tls: must be an object$/],
    ['a CA without certificate and key', { tls: { ca_file: 'ca.pem' } }, {}, /^config security\.tls: needs ca_file, cert_file and key_file together \(or none of them\)$/],
    ['a certificate and key without the CA', { tls: { cert_file: 'c.pem', key_file: 'k.pem' } }, {}, /^config security\.tls: needs ca_file, cert_file and key_file together/],
    ['TLS_CA_FILE alone', {}, { TLS_CA_FILE: '/ca.pem' }, /^config security\.tls: needs ca_file, cert_file and key_file together/],
    ['a TLS file that is not a string', { tls: { ca_file: 7, cert_file: 'c.pem', key_file: 'k.pem' } }, {}, /^config security\.tls\.ca_file: must be a non-empty string$/],
    ['a short secret', { cluster_secret: 'short' }, {}, /^config security\.cluster_secret: must be at least 16 printable characters without spaces$/],
    ['a secret with a space', { cluster_secret: 'sixteen characters or more' }, {}, /^config security\.cluster_secret: must be at least 16/],
    ['a secret that is a number', { cluster_secret: 1234567890123456789 }, {}, /^config security\.cluster_secret: must be at least 16/],
    ['a short CLUSTER_SECRET', {}, { CLUSTER_SECRET: 'short' }, /^config security\.cluster_secret: must be at least 16/],
  ])('%s is rejected with a message naming the key', (_name, security, env, message) => {
    expect(() => parseConfig(withSecurity(security), { baseDir: ROOT, env })).toThrow(message);
    expect(() => parseConfig(withSecurity(security), { baseDir: ROOT, env })).toThrow(ConfigError);
  });
});

describe('useTransport reads the TLS files at start', () => {
  let dir: string;
  let pki: TestPki;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-tls-config-'));
    pki = await writeTestPki(dir);
    await writeFile(path.join(dir, 'not-pem.txt'), 'hello\n');
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const transportConfig = (tls: { caFile: string; certFile: string; keyFile: string }): Pick<AppConfig, 'limits' | 'security'> => ({
    limits: parseConfig(shipped(), { baseDir: ROOT }).limits,
    security: { clusterSecret: SECRET, tls },
  });

  it('accepts a CA, a certificate and its key', () => {
    expect(() => useTransport(transportConfig({ caFile: pki.caFile, certFile: pki.service.certFile, keyFile: pki.service.keyFile }))).not.toThrow();
  });

  it.each<[string, (p: TestPki, d: string) => { caFile: string; certFile: string; keyFile: string }, RegExp]>([
    ['a missing CA file', (p, d) => ({ caFile: path.join(d, 'absent.pem'), certFile: p.service.certFile, keyFile: p.service.keyFile }), /^config security\.tls\.ca_file: cannot read .*absent\.pem: ENOENT/],
    ['a missing key file', (p, d) => ({ caFile: p.caFile, certFile: p.service.certFile, keyFile: path.join(d, 'absent.key') }), /^config security\.tls\.key_file: cannot read .*absent\.key/],
    ['a certificate that is not PEM', (p, d) => ({ caFile: p.caFile, certFile: path.join(d, 'not-pem.txt'), keyFile: p.service.keyFile }), /^config security\.tls\.cert_file: .*not-pem\.txt is not a PEM certificate/],
    ['a CA that is not PEM', (p, d) => ({ caFile: path.join(d, 'not-pem.txt'), certFile: p.service.certFile, keyFile: p.service.keyFile }), /^config security\.tls\.ca_file: .*not-pem\.txt is not a PEM certificate/],
    ['a key that is not PEM', (p, d) => ({ caFile: p.caFile, certFile: p.service.certFile, keyFile: path.join(d, 'not-pem.txt') }), /^config security\.tls\.key_file: .*not-pem\.txt is not a PEM private key/],
    ['the key of another certificate', (p) => ({ caFile: p.caFile, certFile: p.service.certFile, keyFile: p.stranger.keyFile }), /^config security\.tls\.key_file: .*stranger\.key is not the key of the certificate .*service\.pem$/],
  ])('%s is a ConfigError naming the key', (_name, files, message) => {
    const attempt = (): void => useTransport(transportConfig(files(pki, dir)));
    expect(attempt).toThrow(message);
    expect(attempt).toThrow(ConfigError);
  });
});
