// Package thumbnail makes image thumbnails for the content repository. It is
// a pure library: no HTTP, no storage; the media endpoints decide what to
// generate, cache and serve.
//
// The API, for the caller that wires it in:
//
//   - Standard lists the sizes generated once, after upload (Synapse's
//     defaults): 32×32 and 96×96 crop, 320×240, 640×480 and 800×600 scale.
//   - Pick(Standard, w, h, m) answers a thumbnail request with the smallest
//     standard size of method m at least as large as w×h; false means no
//     standard size is large enough and the caller generates w×h on demand
//     (and caches it).
//   - Make(r, contentType, size, maxPixels) reads one image and returns the
//     encoded thumbnail and its content type ("image/jpeg" or "image/png").
//   - MakeAll(r, contentType, sizes, maxPixels) does the same for several
//     sizes, decoding the image once: MakeAll(r, ct, Standard, max) after
//     an upload.
//
// What Make and MakeAll guarantee, so callers need not check:
//
//   - crop fills exactly W×H, cropping the centre of the image; scale fits
//     the whole image within W×H, keeping its aspect ratio.
//   - Never upscaled (the spec's MUST NOT): a dimension of the image smaller
//     than asked stays at its own size, so a thumbnail larger than the
//     original has the original's dimensions. Otherwise never smaller than
//     asked: a crop is exactly W×H, a scale touches the box on one side.
//   - The JPEG EXIF orientation is applied, so the thumbnail is upright; W
//     and H are the upright (displayed) dimensions.
//   - The output is re-encoded from pixels, so EXIF (GPS position, camera)
//     and all other metadata of the original are absent.
//   - PNG if the thumbnail has any transparent pixel, JPEG otherwise.
//   - The pixel count is read from the image header and checked against
//     maxPixels before anything is decoded, so a decompression bomb costs a
//     few kilobytes of reading, not gigabytes of memory.
//
// Errors: ErrNotImage (not a JPEG, PNG, GIF or WebP, or corrupt: a client
// error, the spec's 400), ErrTooManyPixels (over maxPixels), ErrBadSize (a
// Size with a non-positive dimension or unknown method); any other error
// is the reader's own (an I/O error: a server error).
//
// Memory: decoding holds the whole image; a baseline 4:2:0 JPEG takes 1.5
// bytes per pixel (18 MB for 12 megapixels), plus an intermediate of
// W × source height × 4 bytes while resizing. Progressive JPEGs cost more
// (the standard library keeps their DCT coefficients: about 6 bytes per
// pixel); PNG, GIF and WebP decode to 4 bytes per pixel, so the default
// limit admits a 128 MB PNG decode: a small machine passes a lower
// maxPixels. Measured for a 12-megapixel JPEG to 800×600: 31 MB allocated,
// about 50 MB of peak RSS above the process's own. Callers bound
// concurrency to bound the total.
package thumbnail

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"strings"

	"github.com/disintegration/imaging"
	"golang.org/x/image/webp"
)

// Method is how a thumbnail is fitted to its requested size, as named by
// the spec's method parameter.
type Method string

// The thumbnail methods of the spec.
const (
	// Crop fills the requested size exactly, cutting off what overflows
	// around the centre (avatars).
	Crop Method = "crop"
	// Scale fits the whole image within the requested size, keeping its
	// aspect ratio (image previews in the timeline).
	Scale Method = "scale"
)

// Size is a thumbnail size: W×H pixels fitted by Method.
type Size struct {
	W, H   int
	Method Method
}

// String renders s as "96x96-crop", a name fit for a cache key or file name.
func (s Size) String() string { return fmt.Sprintf("%dx%d-%s", s.W, s.H, s.Method) }

// Standard lists the sizes generated for every uploaded image, smallest
// first within each method: Synapse's defaults, which clients are tuned to.
var Standard = []Size{
	{32, 32, Crop},
	{96, 96, Crop},
	{320, 240, Scale},
	{640, 480, Scale},
	{800, 600, Scale},
}

// DefaultMaxPixels is the pixel limit Make applies when given none:
// Synapse's max_image_pixels (32 megapixels, e.g. 6,500 × 4,900).
const DefaultMaxPixels = 32_000_000

// The errors of Make, to be told apart with errors.Is.
var (
	// ErrNotImage means the content is not an image Make can read: not
	// declared as an image, not JPEG, PNG, GIF or WebP, or corrupt.
	ErrNotImage = errors.New("thumbnail: not a supported image")
	// ErrTooManyPixels means the image header declares more pixels than the
	// limit; nothing was decoded.
	ErrTooManyPixels = errors.New("thumbnail: image has too many pixels")
	// ErrBadSize means the requested Size has a non-positive dimension or an
	// unknown method.
	ErrBadSize = errors.New("thumbnail: bad thumbnail size")
)

// Pick returns the smallest of sizes (by area) with method m that is at
// least w×h in both dimensions, so it can answer a request for w×h without
// being smaller than asked: Synapse's rule. A scale box at least as large
// in both dimensions always yields an image at least as large as a w×h box
// would, whatever the image's aspect ratio. It reports false when none is
// large enough, or w or h is not positive: the caller then generates w×h
// on demand.
func Pick(sizes []Size, w, h int, m Method) (Size, bool) {
	var best Size
	found := false
	if w <= 0 || h <= 0 {
		return best, false
	}
	for _, s := range sizes {
		if s.Method != m || s.W < w || s.H < h {
			continue
		}
		if !found || s.W*s.H < best.W*best.H {
			best, found = s, true
		}
	}
	return best, found
}

// maxHeader bounds what is read to find the image's dimensions; JPEG keeps
// them after its APPn segments (EXIF, XMP, ICC profile), which real cameras
// keep well under this.
const maxHeader = 2 << 20

// filter is the resampling filter: Catmull-Rom is as sharp as Lanczos to
// the eye at thumbnail sizes and samples fewer source pixels.
var filter = imaging.CatmullRom

// jpegQuality is the quality of JPEG thumbnails: artefacts are not visible
// at 85, and the files are half the size of 95's.
const jpegQuality = 85

// Make reads an image of the given content type from r and returns its
// thumbnail of size s, encoded, with its content type. The image must be a
// JPEG, PNG, GIF (first frame) or WebP declared as image/* (or undeclared),
// of at most maxPixels pixels (DefaultMaxPixels if maxPixels ≤ 0). The
// package doc lists what the thumbnail guarantees.
func Make(r io.Reader, contentType string, s Size, maxPixels int) (out []byte, outType string, err error) {
	ts, err := MakeAll(r, contentType, []Size{s}, maxPixels)
	if err != nil {
		return nil, "", err
	}
	return ts[0].Data, ts[0].ContentType, nil
}

// Thumbnail is one encoded thumbnail made by MakeAll.
type Thumbnail struct {
	Size        Size   // the size asked for; the image may be smaller (never upscaled)
	Data        []byte // the encoded image
	ContentType string // "image/jpeg" or "image/png"
}

// MakeAll is Make for several sizes of one image, in the order given,
// decoding it once: decoding is most of the cost (for the standard sizes
// after an upload, MakeAll(r, ct, Standard, max)). It fails as a whole,
// before decoding if a size is bad or the image is refused.
func MakeAll(r io.Reader, contentType string, sizes []Size, maxPixels int) ([]Thumbnail, error) {
	for _, s := range sizes {
		if s.W <= 0 || s.H <= 0 || (s.Method != Crop && s.Method != Scale) {
			return nil, fmt.Errorf("%w: %v", ErrBadSize, s)
		}
	}
	img, format, orient, err := decode(r, contentType, maxPixels)
	if err != nil {
		return nil, err
	}
	ts := make([]Thumbnail, len(sizes))
	for i, s := range sizes {
		ts[i].Size = s
		if ts[i].Data, ts[i].ContentType, err = render(img, format, orient, s); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// decode reads the image of r, refusing it by its header (type, pixel
// count) before decoding it. It returns the image as stored, its format
// name and its EXIF orientation (1–8).
func decode(r io.Reader, contentType string, maxPixels int) (img image.Image, format string, orient int, err error) {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil || !strings.HasPrefix(mt, "image/") {
			return nil, "", 0, fmt.Errorf("%w: content type %q", ErrNotImage, contentType)
		}
	}

	// Read the header alone first, keeping the bytes read, so the pixel
	// count is checked before the decoder allocates for it.
	src := &readErr{r: r}
	var head bytes.Buffer
	cfg, format, err := image.DecodeConfig(io.TeeReader(io.LimitReader(src, maxHeader), &head))
	if err != nil {
		return nil, "", 0, src.or(fmt.Errorf("%w: %v", ErrNotImage, err))
	}
	decodeFormat, ok := decoders[format]
	if !ok || cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, "", 0, fmt.Errorf("%w: format %q", ErrNotImage, format)
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return nil, "", 0, fmt.Errorf("%w: %d×%d is over %d", ErrTooManyPixels, cfg.Width, cfg.Height, maxPixels)
	}
	orient = 1
	if format == "jpeg" {
		orient = jpegOrientation(head.Bytes())
	}

	img, err = decodeFormat(io.MultiReader(&head, src))
	if err != nil {
		return nil, "", 0, src.or(fmt.Errorf("%w: %v", ErrNotImage, err))
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		// The limit was checked against the header; an image that is not
		// what its header says is not to be trusted further.
		return nil, "", 0, fmt.Errorf("%w: decoded %v, header said %d×%d", ErrNotImage, b.Size(), cfg.Width, cfg.Height)
	}
	return img, format, orient, nil
}

// render makes and encodes the thumbnail of size s of img, a decoded image
// of the given format and EXIF orientation.
func render(img image.Image, format string, orient int, s Size) (out []byte, outType string, err error) {
	// Resize before turning upright: the transform then copies the small
	// thumbnail rather than the whole image. Orientations 5–8 swap the
	// axes, so the upright W×H is H×W before the turn.
	w, h := s.W, s.H
	if orient >= 5 {
		w, h = h, w
	}
	var t *image.NRGBA
	if s.Method == Crop {
		t = crop(img, w, h)
	} else {
		t = scale(img, w, h)
	}
	t = upright(t, orient)

	// PNG and GIF sources (screenshots, drawings, stickers) stay lossless,
	// as Synapse keeps them, and so does any image with transparency;
	// photos (JPEG, opaque WebP) become JPEG.
	var buf bytes.Buffer
	if format == "png" || format == "gif" || (format != "jpeg" && !opaque(t)) {
		if err := png.Encode(&buf, t); err != nil {
			return nil, "", fmt.Errorf("thumbnail: encoding PNG: %w", err)
		}
		return buf.Bytes(), "image/png", nil
	}
	// Every pixel is opaque, so the premultiplied RGBA view has the same
	// bytes, and the JPEG encoder has a fast path for it.
	rgba := &image.RGBA{Pix: t.Pix, Stride: t.Stride, Rect: t.Rect}
	if err := jpeg.Encode(&buf, rgba, &jpeg.Options{Quality: jpegQuality}); err != nil {
		return nil, "", fmt.Errorf("thumbnail: encoding JPEG: %w", err)
	}
	return buf.Bytes(), "image/jpeg", nil
}

// decoders are the formats decode reads, by the name image.DecodeConfig gives
// them. Other formats registered in the process (imaging registers BMP and
// TIFF) are refused: these four are what Matrix clients send.
var decoders = map[string]func(io.Reader) (image.Image, error){
	"jpeg": jpeg.Decode,
	"png":  png.Decode,
	"gif":  gif.Decode,
	"webp": webp.Decode,
}

// crop returns the centre of img filling exactly w×h, or, where img is
// smaller than that in a dimension, img's own size in that dimension: it
// is cut to the box, never enlarged.
func crop(img image.Image, w, h int) *image.NRGBA {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw < w || sh < h {
		return imaging.CropCenter(img, min(w, sw), min(h, sh))
	}
	// The largest centred rectangle of the box's aspect ratio, taken as a
	// view of the decoded image (no copy), then shrunk to the box.
	cw, ch := sw, sh
	if int64(sw)*int64(h) > int64(sh)*int64(w) {
		cw = max(w, int((int64(sh)*int64(w)+int64(h)/2)/int64(h)))
	} else {
		ch = max(h, int((int64(sw)*int64(h)+int64(w)/2)/int64(w)))
	}
	x0, y0 := b.Min.X+(sw-cw)/2, b.Min.Y+(sh-ch)/2
	centre := subImage(img, image.Rect(x0, y0, x0+cw, y0+ch))
	return imaging.Resize(centre, w, h, filter)
}

// scale returns img shrunk to fit within w×h keeping its aspect ratio, or
// img itself if it already fits.
func scale(img image.Image, w, h int) *image.NRGBA {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw <= w && sh <= h {
		return imaging.Clone(img)
	}
	// Rounded to the nearest pixel and at least one: a 10,000×1 banner
	// still has a row.
	tw, th := w, h
	if int64(sw)*int64(h) > int64(sh)*int64(w) {
		th = max(1, int((int64(sh)*int64(w)+int64(sw)/2)/int64(sw)))
	} else {
		tw = max(1, int((int64(sw)*int64(h)+int64(sh)/2)/int64(sh)))
	}
	return imaging.Resize(img, tw, th, filter)
}

// subImage returns the part r of img, sharing its pixels when img's type
// allows (all the decoders' types do).
func subImage(img image.Image, r image.Rectangle) image.Image {
	if s, ok := img.(interface {
		SubImage(image.Rectangle) image.Image
	}); ok {
		return s.SubImage(r)
	}
	return imaging.Crop(img, r)
}

// upright applies the EXIF orientation o (1–8) to img.
func upright(img *image.NRGBA, o int) *image.NRGBA {
	switch o {
	case 2:
		return imaging.FlipH(img)
	case 3:
		return imaging.Rotate180(img)
	case 4:
		return imaging.FlipV(img)
	case 5:
		return imaging.Transpose(img)
	case 6:
		return imaging.Rotate270(img) // 90° clockwise
	case 7:
		return imaging.Transverse(img)
	case 8:
		return imaging.Rotate90(img) // 90° counter-clockwise
	}
	return img
}

// opaque reports whether every pixel of img is fully opaque.
func opaque(img *image.NRGBA) bool {
	for y := 0; y < img.Rect.Dy(); y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+img.Rect.Dx()*4]
		for i := 3; i < len(row); i += 4 {
			if row[i] != 0xff {
				return false
			}
		}
	}
	return true
}

// readErr remembers the first error of its reader other than EOF, so that
// a disk failure is not mistaken for a corrupt image.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// or returns the reader's error, wrapped, if there was one, else err.
func (e *readErr) or(err error) error {
	if e.err != nil {
		return fmt.Errorf("thumbnail: reading image: %w", e.err)
	}
	return err
}
