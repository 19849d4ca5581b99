// Emit real segments/subsegments with the Node aws-xray-sdk-core to AWS_XRAY_DAEMON_ADDRESS.
//   AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:2000 AWS_XRAY_CONTEXT_MISSING=IGNORE_ERROR \
//     NODE_PATH=target/node/node_modules node node_emit.js [--capture FILE] [seconds_for_sampling]
// Traffic:
//   1. segment "node-seg" with 3 subsegments (one nested, one closed with an error), one datagram;
//   2. segment "node-big" with 105 subsegments open at once: the SDK streams subsegments once more than
//      streamingThreshold (100) are open, so a few go out as separate datagrams before the segment.
// With --capture FILE, every datagram handed to a dgram socket is recorded (by wrapping
// dgram.Socket.prototype.send before the SDK is loaded, then calling the original) and, once every send
// has completed (bounded wait), written to FILE as JSON:
//   {"sdk": "node", "sdk_version": ..., "daemon_address": ..., "datagrams": [{"data", "ip", "port", "error"}]}
// Adapted from /work/shared/reference/test-peers.md, appendix.
'use strict';
const dgram = require('dgram');
const fs = require('fs');

const argv = process.argv.slice(2);
let captureFile = null;
const ci = argv.indexOf('--capture');
if (ci >= 0) { captureFile = argv[ci + 1]; argv.splice(ci, 2); }
const secs = Math.min(Number(argv[0] || 0), 120);

const captured = [];
let pending = 0;
const originalSend = dgram.Socket.prototype.send;
dgram.Socket.prototype.send = function (...args) {
  // Node re-enters send() itself (e.g. while the socket is still binding it queues
  // this.send(list, port, address, callback)): pass such inner calls straight through.
  const last = args[args.length - 1];
  if (typeof last === 'function' && last.xrayCapture) return originalSend.apply(this, args);
  // The SDK always uses the (msg, offset, length, port, address, callback) form.
  const [msg, offset, length, port, address, callback] = args;
  const buf = Buffer.isBuffer(msg) ? msg : Buffer.from(msg);
  const entry = { data: buf.subarray(offset, offset + length).toString('utf8'), ip: address, port: port, error: null };
  captured.push(entry);
  pending += 1;
  const done = function (err) {
    pending -= 1;
    if (err) entry.error = String(err);
    if (typeof callback === 'function') callback(err);
  };
  done.xrayCapture = true;
  return originalSend.call(this, msg, offset, length, port, address, done);
};

const AWSXRay = require('aws-xray-sdk-core');
AWSXRay.enableManualMode();                      // no CLS context needed outside Lambda
AWSXRay.setContextMissingStrategy('IGNORE_ERROR');

function writeCaptureAndExit() {
  const deadline = Date.now() + 5000;
  const poll = () => {
    if (pending > 0 && Date.now() < deadline) { setTimeout(poll, 10); return; }
    if (captureFile) {
      const sdkVersion = require('aws-xray-sdk-core/package.json').version;
      const out = { sdk: 'node', sdk_version: sdkVersion, daemon_address: process.env.AWS_XRAY_DAEMON_ADDRESS || null,
                    unfinished_sends: pending, datagrams: captured };
      fs.writeFileSync(captureFile + '.tmp', JSON.stringify(out));
      fs.renameSync(captureFile + '.tmp', captureFile);
    }
    process.exit(pending > 0 ? 3 : 0);
  };
  poll();
}

// 1) segment with 3 subsegments (one nested, one with an error)
const seg = new AWSXRay.Segment('node-seg');
seg.addAnnotation('peer', 'node'); seg.addMetadata('m', { a: 1 });
const a = seg.addNewSubsegment('sub-a');
const an = a.addNewSubsegment('sub-a-nested'); an.close(); a.close();
const e = seg.addNewSubsegment('sub-err'); e.close(new Error('boom'));
seg.close();

// 2) segment with 105 subsegments open at once: the Node SDK streams once > 100 (streamingThreshold) are open
const big = new AWSXRay.Segment('node-big');
const subs = [];
for (let i = 0; i < 105; i++) subs.push(big.addNewSubsegment('s' + i));
subs.forEach((s) => s.close());
big.close();

// 3) optionally drive the centralized sampler (pollers call the daemon's TCP address)
if (secs > 0) {
  const sampler = AWSXRay.middleware.sampler;
  const t = setInterval(() => sampler.shouldSample({ host: 'h', httpMethod: 'GET', urlPath: '/', serviceName: 'node-peer' }), 200);
  setTimeout(() => { clearInterval(t); writeCaptureAndExit(); }, secs * 1000);
} else {
  writeCaptureAndExit();
}
