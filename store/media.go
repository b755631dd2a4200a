package store

import (
	"encoding/binary"
)

// Media is the record of one piece of content in the media repository.
// The bytes live on disk, named by their SHA-256; this is what the
// repository knows about them.
type Media struct {
	ID          string `json:"id"`       // the media ID of mxc://<server>/<id>
	Origin      string `json:"origin"`   // server name the media belongs to
	Uploader    string `json:"uploader"` // user ID; "" for remote media
	ContentType string `json:"content_type,omitempty"`
	UploadName  string `json:"upload_name,omitempty"`
	Size        int64  `json:"size"`
	// SHA256 is the hex digest naming the file; "" while an asynchronous
	// upload (POST /create) is still pending.
	SHA256  string `json:"sha256,omitempty"`
	Created int64  `json:"created"` // ms since the epoch
	// UnusedExpiresAt is when a pending upload's ID lapses (ms); 0 once
	// the content is uploaded.
	UnusedExpiresAt int64 `json:"unused_expires_at,omitempty"`
}

// Pending reports whether m is an asynchronous upload whose content has
// not arrived yet.
func (m *Media) Pending() bool { return m.SHA256 == "" }

func mediaKey(origin, id string) []byte { return []byte(origin + "\x00" + id) }

// Media returns the record of origin's media ID, or ErrNotFound.
func (tx *Tx) Media(origin, id string) (*Media, error) {
	var m Media
	if err := tx.getJSON(bucketMedia, mediaKey(origin, id), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// PutMedia creates or updates a media record. When the record gains
// content (a new upload, or a pending one completed), its size is added
// to the uploader's usage, which quotas are checked against.
func (tx *Tx) PutMedia(m *Media) error {
	var had int64
	if old, err := tx.Media(m.Origin, m.ID); err == nil && !old.Pending() {
		had = old.Size
	}
	if m.Uploader != "" && !m.Pending() && m.Size != had {
		b := tx.btx.Bucket(bucketMediaUsage)
		used := int64(tx.MediaUsage(m.Uploader)) + m.Size - had
		if err := b.Put([]byte(m.Uploader), binary.BigEndian.AppendUint64(nil, uint64(max(used, 0)))); err != nil {
			return err
		}
	}
	return tx.putJSON(bucketMedia, mediaKey(m.Origin, m.ID), m)
}

// MediaUsage returns the bytes of media userID has uploaded.
func (tx *Tx) MediaUsage(userID string) uint64 {
	v := tx.btx.Bucket(bucketMediaUsage).Get([]byte(userID))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
