import { hostname } from 'node:os';

/**
 * This process, as operators know it: the host (a pod's name under Kubernetes, a container's id
 * under Docker) and the process id. Delivery leases and attempts carry it, so the database says
 * which replica holds a SENDING delivery (one that died holding leases, say) and which made each
 * attempt (one replica whose network cannot reach a receiver, say).
 */
export const REPLICA_NAME = `${hostname()}:${process.pid}`;
