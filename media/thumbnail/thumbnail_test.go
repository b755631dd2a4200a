package thumbnail_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"hearth/media/thumbnail"
)

var (
	red   = color.NRGBA{0xff, 0, 0, 0xff}
	green = color.NRGBA{0, 0xff, 0, 0xff}
	blue  = color.NRGBA{0, 0, 0xff, 0xff}
)

// stripes returns a w×h image of vertical stripes of equal width, one per
// colour, left to right.
func stripes(w, h int, colours ...color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i, c := range colours {
		r := image.Rect(w*i/len(colours), 0, w*(i+1)/len(colours), h)
		draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
	}
	return img
}

// encode encodes img in format ("jpeg", "png" or "gif") and returns the
// bytes with their content type.
func encode(t testing.TB, img image.Image, format string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "jpeg":
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	case "png":
		err = png.Encode(&buf, img)
	case "gif":
		err = gif.Encode(&buf, img, nil)
	default:
		t.Fatalf("no encoder for %s", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), "image/" + format
}

// decode decodes a thumbnail, checking that its bytes are what its content
// type says.
func decode(t *testing.T, out []byte, outType string) image.Image {
	t.Helper()
	img, format, err := image.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("thumbnail does not decode: %v", err)
	}
	if "image/"+format != outType {
		t.Fatalf("thumbnail is %s but labelled %s", format, outType)
	}
	return img
}

func thumb(t *testing.T, data []byte, contentType string, s thumbnail.Size) image.Image {
	t.Helper()
	out, outType, err := thumbnail.Make(bytes.NewReader(data), contentType, s, 0)
	if err != nil {
		t.Fatalf("Make(%v): %v", s, err)
	}
	return decode(t, out, outType)
}

// near reports whether c is within JPEG's error of want.
func near(c color.Color, want color.NRGBA) bool {
	got := color.NRGBAModel.Convert(c).(color.NRGBA)
	d := func(a, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
	return d(got.R, want.R) < 48 && d(got.G, want.G) < 48 && d(got.B, want.B) < 48 && d(got.A, want.A) < 48
}

func TestSizes(t *testing.T) {
	crop := func(w, h int) thumbnail.Size { return thumbnail.Size{W: w, H: h, Method: thumbnail.Crop} }
	scale := func(w, h int) thumbnail.Size { return thumbnail.Size{W: w, H: h, Method: thumbnail.Scale} }
	tests := []struct {
		srcW, srcH   int
		size         thumbnail.Size
		wantW, wantH int
	}{
		// Every standard size, from a landscape photo.
		{1000, 500, crop(32, 32), 32, 32},
		{1000, 500, crop(96, 96), 96, 96},
		{1000, 500, scale(320, 240), 320, 160},
		{1000, 500, scale(640, 480), 640, 320},
		{1000, 500, scale(800, 600), 800, 400},
		// A portrait one.
		{500, 1000, crop(96, 96), 96, 96},
		{500, 1000, scale(320, 240), 120, 240},
		{500, 1000, scale(800, 600), 300, 600},
		// Sizes asked on demand, not square.
		{1000, 500, crop(400, 100), 400, 100},
		{1000, 500, crop(100, 400), 100, 400},
		{1000, 500, scale(1000, 100), 200, 100},
		// Never upscaled: too small in both dimensions, the original size.
		{300, 200, crop(640, 480), 300, 200},
		{300, 200, scale(640, 480), 300, 200},
		{1000, 500, scale(2000, 2000), 1000, 500},
		// Too small in one dimension: that one keeps its own size, the
		// other is cut (crop) or the image already fits (scale).
		{1000, 500, crop(800, 600), 800, 500},
		{300, 1000, crop(640, 480), 300, 480},
		{700, 500, scale(800, 600), 700, 500},
		// Exactly the size asked.
		{96, 96, crop(96, 96), 96, 96},
		// An extreme banner keeps at least one row.
		{4000, 2, scale(320, 240), 320, 1},
	}
	for _, format := range []string{"jpeg", "png", "gif"} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%dx%d/%v", format, tt.srcW, tt.srcH, tt.size), func(t *testing.T) {
				data, ct := encode(t, stripes(tt.srcW, tt.srcH, red, green, blue), format)
				got := thumb(t, data, ct, tt.size).Bounds().Size()
				if got != image.Pt(tt.wantW, tt.wantH) {
					t.Errorf("thumbnail is %v, want %dx%d", got, tt.wantW, tt.wantH)
				}
			})
		}
	}
}

func TestWebP(t *testing.T) {
	tests := []struct {
		file     string
		size     thumbnail.Size
		wantType string
	}{
		// Test images of golang.org/x/image (BSD licence, testdata/LICENSE):
		// WebP cannot be encoded with the Go libraries.
		{"blue-purple-pink.lossy.webp", thumbnail.Size{W: 32, H: 32, Method: thumbnail.Crop}, "image/jpeg"},
		{"blue-purple-pink.lossy.webp", thumbnail.Size{W: 100, H: 100, Method: thumbnail.Scale}, "image/jpeg"},
		{"gopher-doc.with-alpha.lossless.webp", thumbnail.Size{W: 32, H: 32, Method: thumbnail.Crop}, "image/png"},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.size.String(), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			out, outType, err := thumbnail.Make(bytes.NewReader(data), "image/webp", tt.size, 0)
			if err != nil {
				t.Fatal(err)
			}
			if outType != tt.wantType {
				t.Errorf("thumbnail is %s, want %s", outType, tt.wantType)
			}
			got := decode(t, out, outType).Bounds().Size()
			w, h := tt.size.W, tt.size.H
			if tt.size.Method == thumbnail.Scale {
				// Fitted: one side touches the box, the other is at most it.
				if !(got.X == w && got.Y <= h || got.Y == h && got.X <= w) {
					t.Errorf("%dx%d source scaled into %v is %v", cfg.Width, cfg.Height, tt.size, got)
				}
			} else if got != image.Pt(w, h) {
				t.Errorf("%dx%d source cropped to %v is %v", cfg.Width, cfg.Height, tt.size, got)
			}
		})
	}
}

// TestCropKeepsCentre checks that an avatar shows the middle of the photo,
// and that a scaled preview shows all of it.
func TestCropKeepsCentre(t *testing.T) {
	for _, format := range []string{"jpeg", "png", "gif"} {
		t.Run(format, func(t *testing.T) {
			data, ct := encode(t, stripes(900, 300, red, green, blue), format)
			img := thumb(t, data, ct, thumbnail.Size{W: 96, H: 96, Method: thumbnail.Crop})
			b := img.Bounds()
			for _, p := range []image.Point{{b.Min.X + 2, b.Min.Y + 2}, {b.Max.X - 3, b.Max.Y - 3}, {b.Dx() / 2, b.Dy() / 2}} {
				if c := img.At(p.X, p.Y); !near(c, green) {
					t.Errorf("crop pixel %v is %v, want the centre stripe (green)", p, c)
				}
			}
			img = thumb(t, data, ct, thumbnail.Size{W: 300, H: 300, Method: thumbnail.Scale})
			if img.Bounds().Size() != image.Pt(300, 100) {
				t.Fatalf("scaled to %v", img.Bounds().Size())
			}
			for x, want := range map[int]color.NRGBA{10: red, 150: green, 290: blue} {
				if c := img.At(x, 50); !near(c, want) {
					t.Errorf("scaled pixel at x=%d is %v, want %v", x, c, want)
				}
			}
		})
	}
}

func TestPick(t *testing.T) {
	tests := []struct {
		w, h   int
		method thumbnail.Method
		want   string // "" for none: generate on demand
	}{
		{1, 1, thumbnail.Crop, "32x32-crop"},
		{32, 32, thumbnail.Crop, "32x32-crop"},
		{33, 32, thumbnail.Crop, "96x96-crop"},
		{96, 96, thumbnail.Crop, "96x96-crop"},
		{97, 50, thumbnail.Crop, ""},
		{640, 480, thumbnail.Crop, ""}, // a crop is never answered by a scale
		{32, 32, thumbnail.Scale, "320x240-scale"},
		{320, 240, thumbnail.Scale, "320x240-scale"},
		{321, 240, thumbnail.Scale, "640x480-scale"},
		{100, 300, thumbnail.Scale, "640x480-scale"},
		{640, 481, thumbnail.Scale, "800x600-scale"},
		{800, 600, thumbnail.Scale, "800x600-scale"},
		{801, 600, thumbnail.Scale, ""},
		{800, 800, thumbnail.Scale, ""},
		{1600, 1200, thumbnail.Scale, ""}, // high-DPI
		{0, 0, thumbnail.Scale, ""},
		{-1, 32, thumbnail.Crop, ""},
		{32, 32, "zoom", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%d-%s", tt.w, tt.h, tt.method), func(t *testing.T) {
			s, ok := thumbnail.Pick(thumbnail.Standard, tt.w, tt.h, tt.method)
			got := ""
			if ok {
				got = s.String()
			}
			if got != tt.want {
				t.Errorf("Pick = %q, want %q", got, tt.want)
			}
		})
	}
}

// withOrientation returns the JPEG jpg with an EXIF APP1 segment holding
// the orientation o inserted after its start marker, as cameras write it.
func withOrientation(jpg []byte, o uint16) []byte {
	var tiff bytes.Buffer
	tiff.WriteString("MM\x00\x2a")                             // big-endian TIFF
	binary.Write(&tiff, binary.BigEndian, uint32(8))           // IFD0 right after
	binary.Write(&tiff, binary.BigEndian, uint16(2))           // two entries
	binary.Write(&tiff, binary.BigEndian, []uint16{0x0110, 2}) // Model, ASCII
	binary.Write(&tiff, binary.BigEndian, uint32(4))
	tiff.WriteString("cam\x00")
	binary.Write(&tiff, binary.BigEndian, []uint16{0x0112, 3}) // Orientation, SHORT
	binary.Write(&tiff, binary.BigEndian, uint32(1))
	binary.Write(&tiff, binary.BigEndian, []uint16{o, 0})
	binary.Write(&tiff, binary.BigEndian, uint32(0)) // no next IFD
	body := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xff, 0xe1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(2+len(body)))
	seg = append(seg, body...)
	return append(append(append([]byte{}, jpg[:2]...), seg...), jpg[2:]...)
}

// jpegMarkers lists the markers of a JPEG's segments before its scan data.
func jpegMarkers(t *testing.T, b []byte) []byte {
	t.Helper()
	var ms []byte
	for i := 2; i+4 <= len(b) && b[i] == 0xff; i += 2 + int(binary.BigEndian.Uint16(b[i+2:])) {
		ms = append(ms, b[i+1])
		if b[i+1] == 0xda {
			break
		}
	}
	return ms
}

func TestEXIFOrientation(t *testing.T) {
	// Left half red, right half blue, as the sensor saw it; where the red
	// half ends up once upright depends on how the camera was held.
	raw, _ := encode(t, stripes(40, 20, red, blue), "jpeg")
	if o := jpegMarkers(t, withOrientation(raw, 6)); !bytes.Contains(o, []byte{0xe1}) {
		t.Fatalf("test JPEG has no APP1 segment: markers %x", o)
	}
	tests := []struct {
		orientation  uint16
		wantW, wantH int
		redAt        image.Point // a point in the red half once upright
		blueAt       image.Point
	}{
		{1, 40, 20, image.Pt(5, 10), image.Pt(35, 10)},
		{3, 40, 20, image.Pt(35, 10), image.Pt(5, 10)}, // upside down
		{6, 20, 40, image.Pt(10, 5), image.Pt(10, 35)}, // turned 90° clockwise
		{8, 20, 40, image.Pt(10, 35), image.Pt(10, 5)}, // turned 90° anticlockwise
		{2, 40, 20, image.Pt(35, 10), image.Pt(5, 10)}, // mirrored
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(int(tt.orientation)), func(t *testing.T) {
			data := withOrientation(raw, tt.orientation)
			out, outType, err := thumbnail.Make(bytes.NewReader(data), "image/jpeg", thumbnail.Size{W: 800, H: 600, Method: thumbnail.Scale}, 0)
			if err != nil {
				t.Fatal(err)
			}
			img := decode(t, out, outType)
			if img.Bounds().Size() != image.Pt(tt.wantW, tt.wantH) {
				t.Fatalf("upright thumbnail is %v, want %dx%d", img.Bounds().Size(), tt.wantW, tt.wantH)
			}
			if c := img.At(tt.redAt.X, tt.redAt.Y); !near(c, red) {
				t.Errorf("pixel %v is %v, want red", tt.redAt, c)
			}
			if c := img.At(tt.blueAt.X, tt.blueAt.Y); !near(c, blue) {
				t.Errorf("pixel %v is %v, want blue", tt.blueAt, c)
			}
			if ms := jpegMarkers(t, out); bytes.Contains(ms, []byte{0xe1}) || bytes.Contains(out, []byte("Exif")) || bytes.Contains(out, []byte("cam\x00")) {
				t.Errorf("thumbnail keeps EXIF: markers %x", ms)
			}
		})
	}

	t.Run("2x1", func(t *testing.T) {
		data, _ := encode(t, stripes(2, 1, red, blue), "jpeg")
		img := thumb(t, withOrientation(data, 6), "image/jpeg", thumbnail.Size{W: 96, H: 96, Method: thumbnail.Scale})
		if img.Bounds().Size() != image.Pt(1, 2) {
			t.Errorf("a 2x1 image turned by EXIF is %v, want 1x2", img.Bounds().Size())
		}
	})

	// The size asked is the upright one, for both methods.
	big, _ := encode(t, stripes(400, 200, red, blue), "jpeg")
	big = withOrientation(big, 6)
	for _, tt := range []struct {
		size         thumbnail.Size
		wantW, wantH int
	}{
		{thumbnail.Size{W: 96, H: 96, Method: thumbnail.Crop}, 96, 96},
		{thumbnail.Size{W: 100, H: 50, Method: thumbnail.Crop}, 100, 50},
		{thumbnail.Size{W: 320, H: 240, Method: thumbnail.Scale}, 120, 240},
		{thumbnail.Size{W: 150, H: 600, Method: thumbnail.Scale}, 150, 300},
	} {
		t.Run("upright "+tt.size.String(), func(t *testing.T) {
			if got := thumb(t, big, "image/jpeg", tt.size).Bounds().Size(); got != image.Pt(tt.wantW, tt.wantH) {
				t.Errorf("thumbnail of a 200x400 upright photo is %v, want %dx%d", got, tt.wantW, tt.wantH)
			}
		})
	}
}

// pngChunk returns one PNG chunk with its checksum.
func pngChunk(typ string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(c, typ...)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

func TestBombRefusedBeforeDecoding(t *testing.T) {
	const side = 50_000 // 2.5 gigapixels: 10 GB decoded
	ihdr := binary.BigEndian.AppendUint32(nil, side)
	ihdr = binary.BigEndian.AppendUint32(ihdr, side)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA
	pngBomb := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
	pngBomb = append(pngBomb, pngChunk("IDAT", []byte{0x78, 0x9c, 0x03, 0, 0, 0, 0, 1})...)
	pngBomb = append(pngBomb, pngChunk("IEND", nil)...)

	gifBomb := []byte("GIF89a")
	gifBomb = binary.LittleEndian.AppendUint16(gifBomb, side)
	gifBomb = binary.LittleEndian.AppendUint16(gifBomb, side)
	gifBomb = append(gifBomb, 0, 0, 0, 0x3b)

	// A real JPEG whose frame header claims 50,000 × 50,000.
	jpegBomb, _ := encode(t, stripes(16, 16, red), "jpeg")
	sof := bytes.Index(jpegBomb, []byte{0xff, 0xc0})
	binary.BigEndian.PutUint16(jpegBomb[sof+5:], side)
	binary.BigEndian.PutUint16(jpegBomb[sof+7:], side)

	// And an honest image over a lower limit.
	honest, _ := encode(t, stripes(100, 100, red), "png")

	for _, tt := range []struct {
		name, contentType string
		data              []byte
		maxPixels         int
	}{
		{"png", "image/png", pngBomb, 0},
		{"gif", "image/gif", gifBomb, 0},
		{"jpeg", "image/jpeg", jpegBomb, 0},
		{"over the limit", "image/png", honest, 9_999},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := thumbnail.Make(bytes.NewReader(tt.data), tt.contentType, thumbnail.Standard[0], tt.maxPixels)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, thumbnail.ErrTooManyPixels) {
				t.Fatalf("Make = %v, want ErrTooManyPixels", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("refusing allocated %d bytes: it decoded", n)
			}
		})
	}
}

func TestNotImage(t *testing.T) {
	pngData, _ := encode(t, stripes(64, 64, red), "png")
	bmp := append([]byte("BM"), make([]byte, 60)...)
	for _, tt := range []struct {
		name, contentType string
		data              []byte
	}{
		{"text", "text/plain", []byte("hello, world")},
		{"text labelled as an image", "image/png", []byte("hello, world")},
		{"empty", "image/jpeg", nil},
		{"svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)},
		{"image labelled as a document", "application/pdf", pngData},
		{"truncated", "image/png", pngData[:len(pngData)/2]},
		{"bmp", "image/bmp", bmp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := thumbnail.Make(bytes.NewReader(tt.data), tt.contentType, thumbnail.Standard[1], 0)
			if !errors.Is(err, thumbnail.ErrNotImage) {
				t.Errorf("Make = %v, want ErrNotImage", err)
			}
		})
	}
}

func TestReadErrorIsNotBlamedOnTheImage(t *testing.T) {
	data, _ := encode(t, stripes(64, 64, red), "png")
	errDisk := errors.New("disk on fire")
	for _, n := range []int{10, 100} { // in the header, then in the pixels
		r := readerThenError{data[:n], errDisk}
		if _, _, err := thumbnail.Make(&r, "image/png", thumbnail.Standard[1], 0); !errors.Is(err, errDisk) || errors.Is(err, thumbnail.ErrNotImage) {
			t.Errorf("failing after %d bytes: Make = %v, want %v", n, err, errDisk)
		}
	}
}

type readerThenError struct {
	data []byte
	err  error
}

func (r *readerThenError) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// A thumbnail is PNG where the source is PNG or GIF, as Synapse makes
// them (peers compare bytes with what our clients get), or where it has
// transparency; JPEG for photos.
func TestThumbnailFormat(t *testing.T) {
	clear := color.NRGBA{0, 0xff, 0, 0}
	withHole := stripes(200, 200, red, clear, blue)
	palette := color.Palette{red, blue, color.Transparent}
	gifHole := image.NewPaletted(image.Rect(0, 0, 200, 200), palette)
	draw.Draw(gifHole, gifHole.Rect, withHole, image.Point{}, draw.Src)

	for _, tt := range []struct {
		name     string
		img      image.Image
		format   string
		wantType string
	}{
		{"opaque png", stripes(200, 200, red, green), "png", "image/png"},
		{"transparent png", withHole, "png", "image/png"},
		{"transparent gif", gifHole, "gif", "image/png"},
		{"opaque gif", stripes(200, 200, red, green), "gif", "image/png"},
		{"jpeg", stripes(200, 200, red, green), "jpeg", "image/jpeg"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, ct := encode(t, tt.img, tt.format)
			out, outType, err := thumbnail.Make(bytes.NewReader(data), ct, thumbnail.Size{W: 96, H: 96, Method: thumbnail.Scale}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if outType != tt.wantType {
				t.Fatalf("thumbnail is %s, want %s", outType, tt.wantType)
			}
			img := decode(t, out, outType)
			if tt.img == withHole || tt.img == image.Image(gifHole) {
				if _, _, _, a := img.At(48, 48).RGBA(); a != 0 {
					t.Errorf("the transparent middle has alpha %d", a)
				}
				if c := img.At(5, 48); !near(c, red) {
					t.Errorf("the opaque left is %v, want red", c)
				}
			}
		})
	}
}

func TestMakeAllStandard(t *testing.T) {
	data, ct := encode(t, stripes(1200, 900, red, green, blue), "jpeg")
	ts, err := thumbnail.MakeAll(bytes.NewReader(data), ct, thumbnail.Standard, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != len(thumbnail.Standard) {
		t.Fatalf("%d thumbnails for %d sizes", len(ts), len(thumbnail.Standard))
	}
	for i, th := range ts {
		s := thumbnail.Standard[i]
		// 4:3 like the photo, so every standard size is filled exactly.
		if got := decode(t, th.Data, th.ContentType).Bounds().Size(); th.Size != s || got != image.Pt(s.W, s.H) {
			t.Errorf("thumbnail %d is %v for %v, want %dx%d", i, got, th.Size, s.W, s.H)
		}
	}
	sizes := append([]thumbnail.Size{{W: 0, H: 1, Method: thumbnail.Crop}}, thumbnail.Standard...)
	if _, err := thumbnail.MakeAll(bytes.NewReader(data), ct, sizes, 0); !errors.Is(err, thumbnail.ErrBadSize) {
		t.Errorf("MakeAll with a bad size = %v, want ErrBadSize", err)
	}
}

func TestBadSize(t *testing.T) {
	data, ct := encode(t, stripes(64, 64, red), "png")
	for _, s := range []thumbnail.Size{{W: 0, H: 32, Method: thumbnail.Crop}, {W: 32, H: -1, Method: thumbnail.Scale}, {W: 32, H: 32, Method: "zoom"}} {
		if _, _, err := thumbnail.Make(bytes.NewReader(data), ct, s, 0); !errors.Is(err, thumbnail.ErrBadSize) {
			t.Errorf("Make(%v) = %v, want ErrBadSize", s, err)
		}
	}
}

// BenchmarkThumbnail12MP makes thumbnails of a 12-megapixel phone photo:
// the largest standard size alone, and all the standard sizes as after an
// upload. It reports the process's peak resident memory meanwhile (Linux).
func BenchmarkThumbnail12MP(b *testing.B) {
	// A baseline 4:2:0 JPEG with detail everywhere, as a camera makes,
	// built in YCbCr so that building it costs little memory itself.
	src := image.NewYCbCr(image.Rect(0, 0, 4000, 3000), image.YCbCrSubsampleRatio420)
	for y := 0; y < 3000; y++ {
		for x := 0; x < 4000; x++ {
			src.Y[y*src.YStride+x] = uint8(x*7 ^ y*13)
		}
	}
	for i := range src.Cb {
		src.Cb[i], src.Cr[i] = uint8(i), uint8(i>>8)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	src, buf = nil, bytes.Buffer{}

	for _, bm := range []struct {
		name  string
		sizes []thumbnail.Size
	}{
		{"800x600", []thumbnail.Size{{W: 800, H: 600, Method: thumbnail.Scale}}},
		{"Standard", thumbnail.Standard},
	} {
		b.Run(bm.name, func(b *testing.B) {
			runtime.GC()
			debug.FreeOSMemory()
			hwm := resetPeakRSS()
			base := peakRSS()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ts, err := thumbnail.MakeAll(bytes.NewReader(data), "image/jpeg", bm.sizes, 0)
				if err != nil || len(ts) != len(bm.sizes) {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if hwm {
				b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MB")
				b.ReportMetric(float64(base)/(1<<20), "RSS-before-MB")
			}
			b.ReportMetric(float64(len(data))/(1<<20), "jpeg-MB")
		})
	}
}

// resetPeakRSS resets the kernel's high-water mark of this process's
// resident memory, so that it measures what follows; it reports whether
// that worked.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns VmHWM, the peak resident memory of this process, in bytes.
func peakRSS() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
