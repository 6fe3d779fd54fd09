mod fatbins {
    include!(concat!(env!("OUT_DIR"), "/fatbins.rs"));
}

/// The architectures the modules carry machine code for (cyclegan's build, see README.md).
pub use fatbins::BUILT_FOR;

/// A kernel module's fatbin. candle-core loads modules with
/// `context.load_module(module.ptx().into())`; this conversion hands the driver the fatbin,
/// which it takes like PTX text (`cuModuleLoadData`) but without compiling.
#[derive(Debug, Clone, Copy)]
pub struct Image(pub &'static [u8]);

impl From<Image> for cudarc::nvrtc::Ptx {
    fn from(image: Image) -> Self {
        cudarc::nvrtc::Ptx::from_binary(image.0.to_vec())
    }
}

#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Id {
    Affine,
    Binary,
    Cast,
    Conv,
    Fill,
    Indexing,
    Quantized,
    Reduce,
    Sort,
    Ternary,
    Unary,
}

pub const ALL_IDS: [Id; 11] = [
    Id::Affine,
    Id::Binary,
    Id::Cast,
    Id::Conv,
    Id::Fill,
    Id::Indexing,
    Id::Quantized,
    Id::Reduce,
    Id::Sort,
    Id::Ternary,
    Id::Unary,
];

pub struct Module {
    index: usize,
    image: &'static [u8],
}

impl Module {
    pub fn index(&self) -> usize {
        self.index
    }

    /// The module's code (a fatbin; the name is upstream's).
    pub fn ptx(&self) -> Image {
        Image(self.image)
    }
}

const fn module_index(id: Id) -> usize {
    let mut i = 0;
    while i < ALL_IDS.len() {
        if ALL_IDS[i] as u32 == id as u32 {
            return i;
        }
        i += 1;
    }
    panic!("id not found")
}

macro_rules! mdl {
    ($cst:ident, $id:ident) => {
        pub const $cst: Module = Module {
            index: module_index(Id::$id),
            image: &fatbins::$cst,
        };
    };
}

mdl!(AFFINE, Affine);
mdl!(BINARY, Binary);
mdl!(CAST, Cast);
mdl!(CONV, Conv);
mdl!(FILL, Fill);
mdl!(INDEXING, Indexing);
mdl!(QUANTIZED, Quantized);
mdl!(REDUCE, Reduce);
mdl!(SORT, Sort);
mdl!(TERNARY, Ternary);
mdl!(UNARY, Unary);

pub mod ffi;
