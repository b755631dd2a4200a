package store

// Every bbolt bucket is declared here and nowhere else. Names read
// key_value: "localpart_user" maps a localpart to its user record.
var (
	// bucketMeta holds server-wide facts: schema version, server name,
	// signing key. Keys are the meta* constants below.
	bucketMeta = []byte("name_meta")
	// bucketUsers maps a localpart to its JSON User record.
	bucketUsers = []byte("localpart_user")
	// bucketDevices maps localpart 0x00 deviceID to its JSON Device record.
	bucketDevices = []byte("localpart_deviceid_device")
	// bucketAccess maps the SHA-256 of an access token to its JSON Session.
	bucketAccess = []byte("accesshash_session")
	// bucketRefresh maps the SHA-256 of a refresh token to its JSON Session.
	bucketRefresh = []byte("refreshhash_session")
	// bucketRegTokens maps a registration token to its JSON RegToken record.
	bucketRegTokens = []byte("regtoken_regtoken")
	// bucketOpenID maps the SHA-256 of an OpenID token to its JSON
	// OpenIDToken (whose it is, until when).
	bucketOpenID = []byte("openidhash_openidtoken")

	// Rooms and events. An event's stream position (its place in the one
	// global order /sync delivers in) is also its numeric ID: every index
	// below refers to events by position, 8 bytes instead of an event ID.

	// bucketEvents maps a position to the event record (see eventRecord).
	// Its bbolt sequence is the global stream position.
	bucketEvents = []byte("pos_event")
	// bucketEventIDs maps an event ID to its position.
	bucketEventIDs = []byte("eventid_pos")
	// bucketRoomIDs maps a room ID to its numeric room ID (NID).
	bucketRoomIDs = []byte("roomid_nid")
	// bucketRooms maps a room NID to its JSON Room record.
	bucketRooms = []byte("roomnid_room")
	// bucketRoomStream indexes a room's live timeline: NID, pos → nothing.
	bucketRoomStream = []byte("roomnid_pos")
	// bucketRoomTopo indexes a room's timeline by topology: NID, depth,
	// pos → nothing.
	bucketRoomTopo = []byte("roomnid_depth_pos")
	// bucketStreamGaps marks where a room's live timeline has a gap: NID,
	// pos of a live event some of whose prev events we lacked when it
	// came (see GapPrevs) → nothing. Kept for good: a sync across it is
	// limited, whatever backfill later fetched.
	bucketStreamGaps = []byte("roomnid_gappos")
	// bucketBackfillPoints lists the gaps of a room's topological order
	// that backfill has yet to fill: NID, depth, pos of a timeline event
	// (live or backfilled) some of whose prev events we lack → nothing.
	bucketBackfillPoints = []byte("roomnid_depth_gappos")
	// bucketRoomState is the materialised current state: NID, type 0x00
	// state key → pos.
	bucketRoomState = []byte("roomnid_type_statekey_pos")
	// bucketSnapshots maps a snapshot ID to its JSON snapshot (a parent and
	// the state entries that differ from it).
	bucketSnapshots = []byte("snapid_snapshot")
	// bucketMembers indexes memberships by user: user ID 0x00 NID → JSON
	// Membership.
	bucketMembers = []byte("userid_roomnid_membership")
	// bucketTxnIDs maps localpart 0x00 device 0x00 NID txnID → pos, so a
	// retried send returns the first event.
	bucketTxnIDs = []byte("txn_pos")
	// bucketReports maps a report ID to the JSON Report of a room or event
	// a user reported to the server admins.
	bucketReports = []byte("reportid_report")
	// bucketFilters maps localpart 0x00 filter ID to a client's uploaded
	// sync filter JSON.
	bucketFilters = []byte("localpart_filterid_filter")
	// bucketAccountData maps localpart 0x00 room ID ("" for global) 0x00
	// type to a JSON AccountData (content and the stream position it
	// changed at).
	bucketAccountData = []byte("localpart_roomid_type_accountdata")
	// bucketReceipts maps room NID, user ID 0x00 receipt type 0x00 thread
	// ID to a JSON Receipt.
	bucketReceipts = []byte("roomnid_userid_type_thread_receipt")
	// bucketToDevice maps localpart 0x00 device ID 0x00 pos to a JSON
	// ToDevice message waiting for that device.
	bucketToDevice = []byte("localpart_deviceid_pos_todevice")

	// The room directory.

	// bucketAliases maps a local room alias to its JSON Alias record.
	bucketAliases = []byte("alias_alias")
	// bucketRoomAliases indexes aliases by room: NID, alias → nothing.
	bucketRoomAliases = []byte("roomnid_alias")
	// bucketPublished is the public room directory: NID → nothing.
	bucketPublished = []byte("roomnid_published")

	// Relations and redactions (see relations.go).

	// bucketRelations indexes m.relates_to by parent: parent pos, rel_type
	// 0x00, child pos → JSON relation (child type, sender, key, event ID).
	bucketRelations = []byte("parentpos_reltype_childpos_relation")
	// bucketThreads orders a room's threads by their latest reply: NID,
	// latest reply pos, root pos → nothing.
	bucketThreads = []byte("roomnid_latestpos_rootpos")
	// bucketRedactions maps a redacted event's pos to the pos of the
	// redaction that redacted it.
	bucketRedactions = []byte("pos_redactionpos")
	// bucketPendingRedactions maps the ID of an event not received yet to
	// the pos of the first redaction of it, applied when it arrives.
	bucketPendingRedactions = []byte("eventid_redactionpos")
	// bucketEventTxns maps a local event's pos to the client transaction
	// that sent it: localpart 0x00 device 0x00 txnID.
	bucketEventTxns = []byte("pos_txn")

	// Server-side key backups (see backup.go).

	// bucketBackupVersions maps localpart 0x00 version (8 bytes) to a JSON
	// BackupVersion.
	bucketBackupVersions = []byte("localpart_version_backupversion")
	// bucketBackupKeys maps localpart 0x00 version (8 bytes) room ID 0x00
	// session ID to a JSON BackupKey.
	bucketBackupKeys = []byte("localpart_version_roomid_sessionid_backupkey")

	// End-to-end encryption keys (see keys.go).

	// bucketDeviceKeys maps localpart 0x00 device ID to the device's
	// signed identity keys JSON.
	bucketDeviceKeys = []byte("localpart_deviceid_devicekeys")
	// bucketOneTimeKeys maps localpart 0x00 device ID 0x00 algorithm:keyID
	// to an unclaimed one-time key JSON.
	bucketOneTimeKeys = []byte("localpart_deviceid_keyid_onetimekey")
	// bucketFallbackKeys maps localpart 0x00 device ID 0x00 algorithm 0x00
	// to a JSON FallbackKey.
	bucketFallbackKeys = []byte("localpart_deviceid_algorithm_fallbackkey")
	// bucketCrossSigning maps localpart 0x00 usage 0x00 to the user's
	// cross-signing key JSON of that usage.
	bucketCrossSigning = []byte("localpart_usage_crosssigningkey")
	// bucketKeySignatures maps localpart 0x00 key ID (device ID or
	// cross-signing public key) 0x00 signer user ID 0x00 signer key ID to
	// a signature uploaded through /keys/signatures/upload.
	bucketKeySignatures = []byte("localpart_keyid_signer_signerkeyid_signature")
	// bucketDeviceLists maps a stream position to the user ID whose
	// devices or keys changed there.
	bucketDeviceLists = []byte("pos_userid_devicelistchange")

	// End-to-end encryption across servers (see remotekeys.go).

	// bucketFederatedDevices maps a local user ID to the JSON
	// FederatedDevices: what other servers were last told of their
	// devices, and under which device-list stream ID.
	bucketFederatedDevices = []byte("userid_federateddevices")
	// bucketRemoteDeviceLists maps a remote user ID to the JSON
	// RemoteDeviceList cached for them (stream IDs, cross-signing keys).
	bucketRemoteDeviceLists = []byte("userid_remotedevicelist")
	// bucketRemoteDevices maps a remote user ID 0x00 device ID to the
	// JSON RemoteDevice cached for it.
	bucketRemoteDevices = []byte("userid_deviceid_remotedevice")
	// bucketInboundToDevice maps origin 0x00 sender 0x00 message ID of a
	// to-device EDU already delivered to the time (8 bytes, unix ms) it
	// came, so a peer's resend is not delivered twice.
	bucketInboundToDevice = []byte("origin_sender_messageid_ts")

	// The media repository (see media.go).

	// bucketMedia maps origin server name 0x00 media ID to a JSON Media
	// record; the content is a file named by its SHA-256.
	bucketMedia = []byte("origin_mediaid_media")
	// bucketMediaUsage maps a user ID to the bytes of media they uploaded
	// (8 bytes), for the per-user quota.
	bucketMediaUsage = []byte("userid_mediabytes")

	// The outbound federation queue (see fedqueue.go).

	// bucketFedQueue maps destination 0x00 seq (8 bytes, from the bucket's
	// sequence: one order across destinations) to a JSON FedQueued PDU or
	// EDU waiting to be sent there.
	bucketFedQueue = []byte("destination_seq_fedqueued")
	// bucketFedInFlight maps a destination to the seq (8 bytes) of the last
	// entry of the transaction being sent there, so that a retry, even
	// after a restart, sends the same entries under the same txnId.
	bucketFedInFlight = []byte("destination_lastseq")
	// bucketFedTxns maps origin 0x00 txnID to the JSON response we gave a
	// transaction another server sent us, so a retried one is answered
	// again without being processed twice.
	bucketFedTxns = []byte("origin_txnid_response")
)

// allBuckets lists every bucket the current schema has.
var allBuckets = [][]byte{
	bucketMeta, bucketUsers, bucketDevices, bucketAccess, bucketRefresh, bucketRegTokens,
	bucketEvents, bucketEventIDs, bucketRoomIDs, bucketRooms, bucketRoomStream, bucketRoomTopo,
	bucketRoomState, bucketSnapshots, bucketMembers, bucketTxnIDs,
	bucketReports, bucketFilters, bucketAccountData, bucketReceipts, bucketToDevice,
	bucketAliases, bucketRoomAliases, bucketPublished,
	bucketRelations, bucketThreads, bucketRedactions, bucketEventTxns,
	bucketBackupVersions, bucketBackupKeys,
	bucketDeviceKeys, bucketOneTimeKeys, bucketFallbackKeys, bucketCrossSigning, bucketKeySignatures, bucketDeviceLists,
	bucketMedia, bucketMediaUsage,
	bucketFedQueue, bucketFedInFlight, bucketFedTxns,
	bucketOpenID,
	bucketFederatedDevices, bucketRemoteDeviceLists, bucketRemoteDevices, bucketInboundToDevice,
	bucketStreamGaps, bucketBackfillPoints,
	bucketPendingRedactions,
}

// appendOnly lists the buckets keyed by stream position alone, whose new
// keys always go last. bbolt splits a full page half and half, which for
// them would leave every page half empty; writes fill their pages instead.
var appendOnly = [][]byte{bucketEvents, bucketEventTxns, bucketDeviceLists}

// Keys of bucketMeta.
const (
	metaSchemaVersion = "schema_version"
	metaServerName    = "server_name"
	metaSigningKey    = "signing_key"
)
