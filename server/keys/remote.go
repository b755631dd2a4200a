package keys

// The one seam between users of this server and users of others. Local
// users are answered from the store; requests for remote users are grouped
// by server and, until the federation client exists, reported as failures
// of that server, which clients treat as "try again later".

// partition splits a request keyed by user ID into the local part and the
// remote part by server name. Malformed user IDs are dropped.
func partition[V any](byUser map[string]V, isLocal func(string) bool) (local map[string]V, remote map[string]map[string]V) {
	local, remote = map[string]V{}, map[string]map[string]V{}
	for userID, v := range byUser {
		server, ok := splitUserID(userID)
		switch {
		case !ok:
		case isLocal(userID):
			local[userID] = v
		default:
			if remote[server] == nil {
				remote[server] = map[string]V{}
			}
			remote[server][userID] = v
		}
	}
	return local, remote
}

func (s *Service) partition(byUser map[string]map[string]string) (map[string]map[string]string, map[string]map[string]map[string]string) {
	return partition(byUser, s.isLocal)
}

func (s *Service) isLocal(userID string) bool {
	_, ok := s.acc.LocalpartOf(userID)
	return ok
}

// remoteUnavailable is the failure reported for a server whose users'
// keys cannot be fetched: the shape Synapse uses for an unreachable one.
func remoteUnavailable(string) map[string]any {
	return map[string]any{"status": 503, "message": "Keys of other servers' users are not available: federation is not enabled"}
}
