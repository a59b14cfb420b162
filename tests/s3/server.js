#!/usr/bin/env node
// Test S3 endpoint: s3rver behind a proxy that checks what s3rver does not.
//
//   client --(HTTP)--> proxy (this file) --(HTTP)--> s3rver
//
// The proxy
//  - verifies every request's SigV4 signature by recomputing it with AWS's own
//    signer (@smithy/signature-v4) from the known test credentials: 403 on any
//    mismatch, as S3 would;
//  - checks x-amz-content-sha256 against the body (400 XAmzContentSHA256Mismatch)
//    and refuses UNSIGNED-PAYLOAD on PUT/POST;
//  - enforces If-None-Match: * and If-Match on PUT and CompleteMultipartUpload,
//    which s3rver ignores, and CreateBucket's LocationConstraint as AWS does
//    (the region's name outside us-east-1, none in it; S3_TEST_REGION sets
//    the region, default us-east-1);
//  - injects faults on demand (control endpoint below).
//
// Usage: node --openssl-legacy-provider server.js --dir DIR [--port N] [--bucket NAME ...]
//            [--tls-key KEY.pem --tls-cert CERT.pem]   (HTTPS on the proxy port)
// (s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3
// only offers through its legacy provider.)
// Prints "READY <proxy-port> <s3rver-port>" on stdout once both listen.
//
// Control (plain HTTP, unsigned, on the proxy port):
//   POST /__control/fault?kind=K&count=N[&method=GET][&match=SUBSTR][&ms=MS]
//        kinds: slowdown (503 SlowDown), error500, reset (half the body then
//        a connection reset), truncate (half the body then a clean close),
//        corrupt (one byte of the body flipped: the middle one, or &at=N;
//        &sse=kms: sent as from a KMS-encrypted bucket, whose ETag is no
//        MD5), stall (half the body, then
//        silence), delay (ms before answering), trickle (the body one byte
//        every ms, default 50), error200 (200 whose body is
//        an <Error>; meant for CompleteMultipartUpload), error (an S3 error
//        answer: &status=400&code=RequestTimeout[&region=R for an
//        x-amz-bucket-region header]); slowdown and error take
//        &retryafter=V (a Retry-After header: seconds or an HTTP-date)
//   POST /__control/bandwidth?bps=N   every answer's body through one link of N
//        bytes/s in all, shared evenly by the answers in flight (0: unlimited)
//   POST /__control/clear      drop pending faults and the bandwidth limit, zero
//        the counters
//   GET  /__control/stats      JSON counters
'use strict';

const http = require('http');
const https = require('https');
const crypto = require('crypto');
const S3rver = require('s3rver');
const { SignatureV4 } = require('@smithy/signature-v4');
const { Sha256 } = require('@aws-crypto/sha256-js');

const ACCESS_KEY = process.env.S3_TEST_ACCESS_KEY || 'S3RVER';
const SECRET_KEY = process.env.S3_TEST_SECRET_KEY || 'S3RVER';
const REGION = process.env.S3_TEST_REGION || 'us-east-1';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const buckets = [];
process.argv.forEach((a, i) => { if (a === '--bucket') buckets.push(process.argv[i + 1]); });

let faults = [];
// A shared link: every answer's body goes out through one pacer at
// `bandwidth` bytes per second in all (0: unlimited), split evenly between
// the answers in flight, as a slow network would share it.
let bandwidth = 0;
const paced = new Set();
let pacer = null;
let pacerCarry = 0;
const PACE_MS = 20;
function pace(res, body) {
  paced.add({ res, body, off: 0 });
  if (pacer) return;
  pacer = setInterval(() => {
    for (const p of paced) if (p.res.destroyed) paced.delete(p);
    if (paced.size === 0) {
      clearInterval(pacer);
      pacer = null;
      pacerCarry = 0;
      return;
    }
    pacerCarry += bandwidth * PACE_MS / 1000;
    const each = Math.floor(pacerCarry / paced.size);
    if (each < 1) return;
    pacerCarry -= each * paced.size;
    for (const p of paced) {
      p.res.write(p.body.subarray(p.off, p.off + each));
      p.off += each;
      if (p.off >= p.body.length) {
        p.res.end();
        paced.delete(p);
      }
    }
  }, PACE_MS);
}
const completedUploads = new Set();
let stats = newStats();
function newStats() {
  return { requests: 0, byMethod: {}, sigFailures: 0, shaFailures: 0, preconditionFailures: 0,
           injected: {} };
}

function xmlEscape(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
function sendError(res, status, code, message, extraHeaders) {
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code +
    '</Code><Message>' + xmlEscape(message) + '</Message><RequestId>proxy</RequestId></Error>';
  res.writeHead(status, Object.assign({ 'Content-Type': 'application/xml',
                                        'Content-Length': Buffer.byteLength(body) }, extraHeaders || {}));
  res.end(body);
}

// Raw query -> { name: value } with values decoded, as the signer expects.
function parseQuery(raw) {
  const q = {};
  if (!raw) return q;
  for (const part of raw.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
    const v = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1));
    if (k in q) q[k] = [].concat(q[k], v); else q[k] = v;
  }
  return q;
}

function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  if (!m) return null;
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}

const signer = new SignatureV4({
  credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
  region: REGION, service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: true,
});

// @return null if the request is signed right, else [status, code, message].
async function verifySignature(req, body) {
  const auth = req.headers['authorization'];
  if (!auth) return [403, 'AccessDenied', 'request is not signed'];
  const m = /^AWS4-HMAC-SHA256 Credential=([^/,]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return [400, 'AuthorizationHeaderMalformed', 'cannot parse ' + auth];
  const [, ak, day, region, service, signedList, signature] = m;
  if (ak !== ACCESS_KEY) return [403, 'InvalidAccessKeyId', 'unknown access key ' + ak];
  if (region !== REGION || service !== 's3')
    return [400, 'AuthorizationHeaderMalformed', 'scope ' + region + '/' + service];
  const date = parseAmzDate(req.headers['x-amz-date']);
  if (!date) return [403, 'AccessDenied', 'missing or bad x-amz-date'];
  if (Math.abs(Date.now() - date.getTime()) > 15 * 60 * 1000)
    return [403, 'RequestTimeTooSkewed', 'x-amz-date too far from now'];
  const signedHeaders = signedList.split(';');
  if (!signedHeaders.includes('host') || !signedHeaders.includes('x-amz-content-sha256'))
    return [403, 'AccessDenied', 'host and x-amz-content-sha256 must be signed'];
  const headers = {};
  for (const h of signedHeaders) {
    if (req.headers[h] === undefined) return [403, 'AccessDenied', 'signed header missing: ' + h];
    headers[h] = req.headers[h];
  }
  const qi = req.url.indexOf('?');
  const request = {
    method: req.method, protocol: 'http:', hostname: 'ignored',
    path: qi < 0 ? req.url : req.url.slice(0, qi),
    query: parseQuery(qi < 0 ? '' : req.url.slice(qi + 1)),
    headers, body,
  };
  const signed = await signer.sign(request, { signingDate: date, signableHeaders: new Set(signedHeaders) });
  const want = /Signature=([0-9a-f]{64})/.exec(signed.headers['authorization'])[1];
  if (want !== signature || day !== req.headers['x-amz-date'].slice(0, 8))
    return [403, 'SignatureDoesNotMatch',
            'The request signature we calculated does not match the signature you provided.'];
  return null;
}

function takeFault(req) {
  for (const f of faults) {
    if (f.count <= 0) continue;
    if (f.method && f.method !== req.method) continue;
    if (f.match && !req.url.includes(f.match)) continue;
    f.count--;
    stats.injected[f.kind] = (stats.injected[f.kind] || 0) + 1;
    return f;
  }
  return null;
}

// Serialize conditional writes so that two If-None-Match: * PUTs cannot both win.
let condChain = Promise.resolve();
function serialized(fn) {
  const p = condChain.then(fn, fn);
  condChain = p.catch(() => {});
  return p;
}

function upstream(port, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(body);
  });
}

async function checkPrecondition(s3port, req) {
  const inm = req.headers['if-none-match'];
  const im = req.headers['if-match'];
  if (!inm && !im) return null;
  const path = req.url.split('?')[0];
  const head = await upstream(s3port, 'HEAD', path, { host: req.headers.host }, null);
  if (inm === '*' && head.status === 200) return [412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'];
  if (im) {
    if (head.status === 404) return [404, 'NoSuchKey', 'The specified key does not exist.'];
    if (head.headers['etag'] !== im) return [412, 'PreconditionFailed', 'ETag does not match'];
  }
  return null;
}

async function handle(s3port, req, res, body) {
  stats.requests++;
  stats.byMethod[req.method] = (stats.byMethod[req.method] || 0) + 1;
  const bad = await verifySignature(req, body);
  if (bad) {
    stats.sigFailures++;
    if (process.env.S3_PROXY_LOG) console.error('proxy: refused', req.method, req.url, bad[1], bad[2], JSON.stringify(req.headers));
    return sendError(res, ...bad);
  }
  const claimed = req.headers['x-amz-content-sha256'];
  if ((req.method === 'PUT' || req.method === 'POST') && claimed === 'UNSIGNED-PAYLOAD') {
    stats.shaFailures++;
    return sendError(res, 400, 'InvalidRequest', 'UNSIGNED-PAYLOAD refused for uploads');
  }
  if (claimed !== 'UNSIGNED-PAYLOAD' && crypto.createHash('sha256').update(body).digest('hex') !== claimed) {
    stats.shaFailures++;
    return sendError(res, 400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }
  const fault = takeFault(req);
  if (fault && fault.kind === 'delay') await new Promise((r) => setTimeout(r, fault.ms || 1000));
  // &retryafter=V: a Retry-After header (seconds or an HTTP-date) on the answer.
  const retryAfter = fault && fault.retryAfter ? { 'Retry-After': fault.retryAfter } : null;
  if (fault && fault.kind === 'slowdown') return sendError(res, 503, 'SlowDown', 'Please reduce your request rate.', retryAfter);
  if (fault && fault.kind === 'error500') return sendError(res, 500, 'InternalError', 'We encountered an internal error. Please try again.');
  // &region=R: the bucket's region in x-amz-bucket-region, as S3 sends it with
  // a 301 (a HEAD's only clue, having no body).
  if (fault && fault.kind === 'error')
    return sendError(res, fault.status || 400, fault.code || 'InvalidArgument', 'injected by the test proxy',
                     Object.assign({}, retryAfter, fault.region ? { 'x-amz-bucket-region': fault.region } : null));
  if (fault && fault.kind === 'error200') {
    const b = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>';
    res.writeHead(200, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(b) });
    return res.end(b);
  }

  // CreateBucket: AWS wants the endpoint's region as LocationConstraint
  // outside us-east-1 and refuses it there (s3rver takes any body).
  if (req.method === 'PUT' && /^\/[^/?]+\/?(\?|$)/.test(req.url) && REGION !== 'auto') {
    const m = /<LocationConstraint>([^<]*)<\/LocationConstraint>/.exec(body.toString());
    const want = REGION === 'us-east-1' ? null : REGION;
    if ((m ? m[1] : null) !== want) {
      if (REGION === 'us-east-1')
        return sendError(res, 400, 'InvalidLocationConstraint', 'The specified location-constraint is not valid');
      return sendError(res, 400, 'IllegalLocationConstraintException', m
        ? 'The ' + m[1] + ' location constraint is incompatible for the region specific endpoint this request was sent to.'
        : 'The unspecified location constraint is incompatible for the region specific endpoint this request was sent to.');
    }
  }

  const isComplete = req.method === 'POST' && /[?&]uploadId=/.test(req.url);
  const uploadId = isComplete ? parseQuery(req.url.split('?')[1]).uploadId : null;
  // S3 answers 404 NoSuchUpload for an upload already completed (s3rver: 500).
  if (isComplete && completedUploads.has(uploadId))
    return sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  const isPut = req.method === 'PUT' && !/[?&]partNumber=/.test(req.url);
  let up;
  if (isPut || isComplete) {
    const r = await serialized(async () => {
      const pre = await checkPrecondition(s3port, req);
      if (pre) return { pre };
      return { up: await upstream(s3port, req.method, req.url, req.headers, body) };
    });
    if (r.pre) {
      stats.preconditionFailures++;
      return sendError(res, ...r.pre);
    }
    up = r.up;
    if (isComplete && up.status === 200 && !up.body.includes('<Error>')) completedUploads.add(uploadId);
  } else {
    up = await upstream(s3port, req.method, req.url, req.headers, body);
  }

  const headers = Object.assign({}, up.headers);
  delete headers['transfer-encoding'];
  delete headers['connection'];
  delete headers['keep-alive'];
  let out = up.body;
  if (req.method !== 'HEAD') headers['content-length'] = String(out.length);
  if (fault && fault.kind === 'corrupt' && out.length > 0) {
    out = Buffer.from(out);
    out[fault.at >= 0 ? Math.min(fault.at, out.length - 1) : out.length >> 1] ^= 0x5a;
    // &sse=kms: as from a bucket encrypted with KMS, whose ETags are no MD5
    // of the bytes (so the client cannot check them)
    if (fault.sse === 'kms') {
      headers['x-amz-server-side-encryption'] = 'aws:kms';
      headers['etag'] = '"' + crypto.randomBytes(16).toString('hex') + '"';
    }
  }
  if (fault && (fault.kind === 'reset' || fault.kind === 'truncate' || fault.kind === 'stall')) {
    if (out.length < 2) {
      if (fault.kind === 'stall') return; // never answer
      return fault.kind === 'reset' ? req.socket.resetAndDestroy() : req.socket.end();
    }
    res.writeHead(up.status, headers);
    res.write(out.subarray(0, out.length >> 1));
    if (fault.kind === 'stall') return; // headers and half the body, then silence
    // Let the half body reach the client before the connection goes.
    return setTimeout(() => (fault.kind === 'reset' ? req.socket.resetAndDestroy() : req.socket.end()), 50);
  }
  if (fault && fault.kind === 'trickle' && req.method !== 'HEAD') {
    // The whole answer, one byte every ms (default 50): never a stall, never done soon.
    res.writeHead(up.status, headers);
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed || i >= out.length) {
        clearInterval(timer);
        return res.destroyed ? undefined : res.end();
      }
      res.write(out.subarray(i, i + 1));
      i++;
    }, fault.ms || 50);
    return;
  }
  res.writeHead(up.status, headers);
  if (bandwidth > 0 && req.method !== 'HEAD' && out.length > 0) return pace(res, out);
  res.end(req.method === 'HEAD' ? undefined : out);
}

function control(req, res) {
  const [path, raw] = req.url.split('?');
  const q = parseQuery(raw);
  if (path === '/__control/fault') {
    faults.push({ kind: q.kind, count: +(q.count || 1), method: q.method, match: q.match, ms: +(q.ms || 0),
                  status: +(q.status || 0), code: q.code, region: q.region, retryAfter: q.retryafter, sse: q.sse,
                  at: q.at === undefined ? -1 : +q.at });
  } else if (path === '/__control/bandwidth') {
    bandwidth = +(q.bps || 0);
  } else if (path === '/__control/clear') {
    faults = [];
    bandwidth = 0;
    stats = newStats();
  } else if (path !== '/__control/stats') {
    res.writeHead(404);
    return res.end();
  }
  const b = JSON.stringify(stats);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(b) });
  res.end(b);
}

// stdout carries only the READY line (the test reads it, then closes the
// pipe); every log, s3rver's included, goes to stderr.
const fs = require('fs');
process.stdout.write = process.stderr.write.bind(process.stderr);

async function main() {
  const dir = arg('--dir');
  if (!dir) {
    console.error('usage: server.js --dir DIR [--port N] [--bucket NAME ...]');
    process.exit(2);
  }
  const s3 = new S3rver({
    address: '127.0.0.1', port: 0, silent: !process.env.S3_PROXY_LOG, directory: dir,
    allowMismatchedSignatures: true, // the proxy checks signatures, strictly
    configureBuckets: buckets.map((name) => ({ name, configs: [] })),
  });
  const { port: s3port } = await s3.run();
  const onRequest = (req, res) => {
    if (req.url.startsWith('/__control/')) return control(req, res);
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      handle(s3port, req, res, Buffer.concat(chunks)).catch((e) => {
        if (!res.headersSent) sendError(res, 500, 'InternalError', 'proxy: ' + e.message);
        else res.destroy();
      });
    });
  };
  const server = arg('--tls-key')
    ? https.createServer({ key: fs.readFileSync(arg('--tls-key')), cert: fs.readFileSync(arg('--tls-cert')) }, onRequest)
    : http.createServer(onRequest);
  server.keepAliveTimeout = 30000;
  server.listen(+(arg('--port', 0)), '127.0.0.1', () => {
    fs.writeSync(1, 'READY ' + server.address().port + ' ' + s3port + '\n');
  });
  const stop = () => { server.close(); s3.close().finally(() => process.exit(0)); setTimeout(() => process.exit(0), 500).unref(); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error('server.js: ' + e.stack);
  process.exit(1);
});
