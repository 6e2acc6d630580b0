// Browser side of the WebRTC acceptance test: JsSIP user agents in a page, every event they raise recorded in
// `window.harness.events` for the Node driver (driver.mjs) to wait on and report. Bundled by esbuild at test time.
import JsSIP from 'jssip';

JsSIP.debug.enable('JsSIP:*'); // the driver copies the page console (the SIP trace JsSIP prints) to a log file

const events = [];
const agents = new Map();

function record(agent, type, detail = {}) {
  events.push({ t: Date.now(), agent, type, ...detail });
}

// ICE may only find loopback host candidates (or none) here, and only signalling is judged: never let candidate
// gathering hold the INVITE or its 200 back for more than a moment.
const PC_CONFIG = { iceServers: [] };
const ICE_READY_MS = 300;

function watchSession(name, session, originator, request) {
  const detail = { originator };
  if (originator === 'remote' && request) detail.request = request.data || String(request);
  record(name, 'newRTCSession', detail);
  let iceTimer = null;
  session.on('icecandidate', (e) => {
    if (iceTimer === null) iceTimer = setTimeout(e.ready, ICE_READY_MS);
  });
  // In a namespace with only loopback Chromium may find no candidate at all and stay 'gathering' forever: JsSIP
  // then never sends its INVITE (or 200). End gathering with an end-of-candidates event of our own.
  const endGathering = (pc) => {
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState !== 'gathering') return;
      setTimeout(() => {
        if (pc.iceGatheringState === 'gathering') {
          record(name, 'iceGatheringCut');
          pc.dispatchEvent(new RTCPeerConnectionIceEvent('icecandidate', { candidate: null }));
        }
      }, ICE_READY_MS);
    });
  };
  if (session.connection) endGathering(session.connection);
  else session.on('peerconnection', (e) => endGathering(e.peerconnection));
  session.on('sending', (e) => record(name, 'sending', { request: String(e.request) }));
  session.on('progress', (e) => record(name, 'progress', { originator: e.originator,
    status: e.response ? e.response.status_code : undefined }));
  session.on('accepted', (e) => record(name, 'accepted', { originator: e.originator,
    response: e.response ? e.response.data : undefined }));
  session.on('confirmed', (e) => record(name, 'confirmed', { originator: e.originator }));
  session.on('ended', (e) => record(name, 'ended', { originator: e.originator, cause: e.cause,
    message: e.message && e.message.data ? e.message.data : undefined }));
  session.on('failed', (e) => record(name, 'failed', { originator: e.originator, cause: e.cause,
    status: e.message && e.message.status_code, message: e.message && e.message.data ? e.message.data : undefined }));
}

window.harness = {
  events,

  /** Starts a JsSIP UA named `name` on `wsUrl` as `uri` (digest with `password`); `autoAnswer` answers calls.
   * A web agent has a `token` instead of a password: sent as X-Connect-Token on its REGISTERs (the registrator's
   * extra headers, un-REGISTER included) and on the INVITEs it places (the call's extraHeaders). Not the UA-wide
   * `extra_headers`: JsSIP would put it in every response too, and a 200 OK would hand it to the caller. */
  start({ name, uri, password, token, wsUrl, register = true, autoAnswer = false }) {
    const socket = new JsSIP.WebSocketInterface(wsUrl);
    const ua = new JsSIP.UA({
      sockets: [socket],
      uri,
      password,
      register,
      register_expires: 300,
      connection_recovery_min_interval: 1,
      connection_recovery_max_interval: 2,
      user_agent: `JsSIP ${JsSIP.version} (routr-ray acceptance)`,
    });
    ua.on('connected', () => record(name, 'connected'));
    ua.on('disconnected', (e) => record(name, 'disconnected', { error: Boolean(e.error), code: e.code }));
    ua.on('registered', (e) => record(name, 'registered', { response: e.response.data }));
    ua.on('unregistered', (e) => record(name, 'unregistered', { status: e.response ? e.response.status_code : undefined }));
    ua.on('registrationFailed', (e) => record(name, 'registrationFailed', { cause: e.cause,
      status: e.response ? e.response.status_code : undefined, response: e.response ? e.response.data : undefined }));
    if (token) ua.registrator().setExtraHeaders([`X-Connect-Token: ${token}`]);
    ua.on('newRTCSession', (e) => {
      watchSession(name, e.session, e.originator, e.request);
      if (e.originator === 'remote' && autoAnswer) {
        e.session.answer({ mediaConstraints: { audio: true, video: false }, pcConfig: PC_CONFIG });
      }
    });
    agents.set(name, { ua, session: null, token });
    ua.start();
  },

  /** Calls `target` from agent `name` with a fake microphone (a web agent with its token). */
  call(name, target) {
    const agent = agents.get(name);
    agent.session = agent.ua.call(target, {
      mediaConstraints: { audio: true, video: false },
      pcConfig: PC_CONFIG,
      extraHeaders: agent.token ? [`X-Connect-Token: ${agent.token}`] : [],
    });
  },

  /** Records a `mediaStats` event: the audio RTP packets agent `name`'s peer connection sent and received, the
   * selected ICE candidate pair and the DTLS state (RTCPeerConnection.getStats()). */
  async mediaStats(name) {
    const { ua } = agents.get(name);
    const session = Object.values(ua._sessions || {})[0];
    const pc = session && session.connection;
    const detail = { inboundPackets: 0, outboundPackets: 0, bytesReceived: 0, dtlsState: null, pair: null };
    if (pc) {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          detail.inboundPackets += s.packetsReceived || 0;
          detail.bytesReceived += s.bytesReceived || 0;
        } else if (s.type === 'outbound-rtp' && s.kind === 'audio') {
          detail.outboundPackets += s.packetsSent || 0;
        } else if (s.type === 'transport') {
          detail.dtlsState = s.dtlsState;
          const pair = s.selectedCandidatePairId && report.get(s.selectedCandidatePairId);
          const remote = pair && report.get(pair.remoteCandidateId);
          if (remote) detail.pair = `${remote.address || remote.ip}:${remote.port} ${remote.candidateType}`;
        }
      });
    }
    record(name, 'mediaStats', detail);
  },

  /** Hangs up agent `name`'s call (BYE once confirmed). */
  hangup(name) {
    const { ua } = agents.get(name);
    ua.terminateSessions();
  },

  /** Un-registers (REGISTER with Expires 0 for its Contact) and keeps the transport until the answer. */
  unregister(name) {
    agents.get(name).ua.unregister();
  },

  stop(name) {
    agents.get(name).ua.stop();
  },
};
