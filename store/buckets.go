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
)

// allBuckets lists every bucket the current schema has.
var allBuckets = [][]byte{
	bucketMeta, bucketUsers, bucketDevices, bucketAccess, bucketRefresh, bucketRegTokens,
}

// Keys of bucketMeta.
const (
	metaSchemaVersion = "schema_version"
	metaServerName    = "server_name"
	metaSigningKey    = "signing_key"
)
