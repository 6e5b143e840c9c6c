import type { Logger } from '../../shared/logger';
import type { NodeReplica } from '../../shared/node-directory';
import { NodeSession, type NodeSessionListener } from './node-session';

/** The coordinator's sessions, one per replica, opened on first use. */
export class NodeSessions {
  private readonly sessions = new Map<string, NodeSession>();

  constructor(
    private readonly coordinatorId: string,
    private readonly listener: NodeSessionListener,
    private readonly logger: Logger,
  ) {}

  get(replica: NodeReplica): NodeSession {
    let session = this.sessions.get(replica.id);
    if (session !== undefined && session.replica.address !== replica.address) {
      session.close();
      session = undefined;
    }
    if (session === undefined) {
      session = new NodeSession(replica, this.coordinatorId, this.listener, this.logger);
      this.sessions.set(replica.id, session);
    }
    return session;
  }

  /** The session of a replica, if one was ever opened. */
  existing(replicaId: string): NodeSession | undefined {
    return this.sessions.get(replicaId);
  }

  closeAll(): void {
    for (const session of this.sessions.values()) session.close();
    this.sessions.clear();
  }
}
