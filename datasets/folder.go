package datasets

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // registers JPEG with image.Decode
	_ "image/png"  // registers PNG with image.Decode
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spakin/netpbm" // registers PPM, PGM, PBM and PAM with image.Decode
)

// imageExts are the file name extensions read from class folders (any case);
// other files (README, hidden files) are ignored.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".ppm": true, ".pgm": true, ".pnm": true}

// folderStore holds the paths of an image folder's files; images are decoded on demand.
type folderStore struct {
	paths  []string
	labels []int32
}

func (s *folderStore) len() int                      { return len(s.paths) }
func (s *folderStore) label(i int) int               { return int(s.labels[i]) }
func (s *folderStore) image(i int) (Image, error)    { return ReadImageFile(s.paths[i]) }
func (s *folderStore) shape() (h, w, c int, ok bool) { return 0, 0, 0, false }

// ReadImageFolder reads dir laid out with one sub-folder per class, each
// holding PNG, JPEG or PPM/PGM files (by extension, any case), as torchvision's
// ImageFolder: examples ordered by class folder, then file name.
//
// With classes nil the classes are the sub-folder names, sorted (byte order).
// Otherwise each sub-folder must be named by one of classes or by a class
// index ("7", "00007"). Images are decoded when Image(i) is called, not here.
func ReadImageFolder(dir string, classes []string) (*Dataset, error) {
	folders, err := classFolders(dir)
	if err != nil {
		return nil, err
	}
	if len(folders) == 0 {
		return nil, fmt.Errorf("datasets: %s holds no class folders; an image folder dataset has one sub-folder per class holding .png, .jpg or .ppm files", dir)
	}
	if classes == nil {
		classes = folders // classFolders sorts them
	}
	st, err := readClassFolders(dir, folders, classes)
	if err != nil {
		return nil, err
	}
	return newDataset(filepath.Base(dir), classes, st), nil
}

// classFolders lists the sub-folders of dir, sorted, hidden ones excluded.
func classFolders(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() {
			out = append(out, e.Name())
		} else if e.Type()&os.ModeSymlink != 0 {
			if st, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && st.IsDir() {
				out = append(out, e.Name())
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// classIndex maps a class folder name to its label.
func classIndex(folder string, classes []string) (int, bool) {
	if i := slices.Index(classes, folder); i >= 0 {
		return i, true
	}
	if i, err := strconv.Atoi(folder); err == nil && i >= 0 && i < len(classes) && !strings.HasPrefix(folder, "+") {
		return i, true
	}
	return 0, false
}

func readClassFolders(dir string, folders, classes []string) (*folderStore, error) {
	st := &folderStore{}
	for _, f := range folders {
		label, ok := classIndex(f, classes)
		if !ok {
			return nil, fmt.Errorf("datasets: %s: class folder %q is neither a class name nor a class index of the %d classes (%s); rename it or fix classes.txt",
				dir, f, len(classes), summarize(classes))
		}
		ents, err := os.ReadDir(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("datasets: %w", err)
		}
		n := 0
		for _, e := range ents { // ReadDir sorts by file name
			name := e.Name()
			if strings.HasPrefix(name, ".") || e.IsDir() || !imageExts[strings.ToLower(filepath.Ext(name))] {
				continue
			}
			st.paths = append(st.paths, filepath.Join(dir, f, name))
			st.labels = append(st.labels, int32(label))
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("datasets: class folder %s holds no .png, .jpg, .jpeg, .ppm, .pgm or .pnm file", filepath.Join(dir, f))
		}
	}
	return st, nil
}

func summarize(names []string) string {
	if len(names) <= 5 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:5], ", ") + ", …"
}

// ReadImageFile decodes a PNG, JPEG or Netpbm (PPM, PGM, PBM, PAM) file,
// recognised by content, into an Image: gray images (8 or 16 bit gray PNG or
// JPEG, PGM, PBM) as 1 channel, all others as RGB with any alpha dropped
// (as PIL's convert("RGB")). 16-bit samples and Netpbm maximum values other
// than 255 are scaled to 0…255.
func ReadImageFile(path string) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, fmt.Errorf("datasets: %w", err)
	}
	defer f.Close()
	m, format, err := image.Decode(bufio.NewReader(f))
	if err != nil {
		return Image{}, fmt.Errorf("datasets: %s: cannot decode image (%v); PNG, JPEG and PPM/PGM files are read", path, err)
	}
	img := FromStdImage(m)
	if img.Height == 0 || img.Width == 0 {
		return Image{}, fmt.Errorf("datasets: %s: empty %s image", path, format)
	}
	return img, nil
}

// FromStdImage converts a standard library image to an Image (see ReadImageFile).
func FromStdImage(m image.Image) Image {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	switch m := m.(type) {
	case *image.Gray:
		return copyRows(m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), w, h, 1)
	case *netpbm.GrayM:
		if m.Model.M == 255 {
			return copyRows(m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), w, h, 1)
		}
	case *netpbm.RGBM:
		if m.Model.M == 255 {
			return copyRows(m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), w, h, 3)
		}
	case *image.NRGBA:
		out := Image{Height: h, Width: w, Channels: 3, Pix: make([]uint8, h*w*3)}
		for y := range h {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				copy(out.Pix[(y*w+x)*3:(y*w+x)*3+3], row[4*x:4*x+3])
			}
		}
		return out
	case *image.YCbCr, *image.RGBA:
		if m.(interface{ Opaque() bool }).Opaque() {
			rgba := image.NewRGBA(image.Rect(0, 0, w, h))
			draw.Draw(rgba, rgba.Rect, m, b.Min, draw.Src)
			out := Image{Height: h, Width: w, Channels: 3, Pix: make([]uint8, h*w*3)}
			for i := range h * w {
				copy(out.Pix[3*i:3*i+3], rgba.Pix[4*i:4*i+3])
			}
			return out
		}
	}
	if isGrayModel(m) {
		out := Image{Height: h, Width: w, Channels: 1, Pix: make([]uint8, h*w)}
		for y := range h {
			for x := range w {
				out.Pix[y*w+x] = color.GrayModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
			}
		}
		return out
	}
	out := Image{Height: h, Width: w, Channels: 3, Pix: make([]uint8, h*w*3)}
	for y := range h {
		for x := range w {
			c := color.NRGBAModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			o := (y*w + x) * 3
			out.Pix[o], out.Pix[o+1], out.Pix[o+2] = c.R, c.G, c.B
		}
	}
	return out
}

func isGrayModel(m image.Image) bool {
	switch m.(type) {
	case *image.Gray, *image.Gray16, *netpbm.GrayM, *netpbm.GrayM32, *netpbm.BW:
		return true
	}
	return m.ColorModel() == color.GrayModel || m.ColorModel() == color.Gray16Model
}

func copyRows(pix []uint8, stride, off, w, h, c int) Image {
	out := Image{Height: h, Width: w, Channels: c, Pix: make([]uint8, h*w*c)}
	for y := range h {
		copy(out.Pix[y*w*c:(y+1)*w*c], pix[off+y*stride:])
	}
	return out
}
