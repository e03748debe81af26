//! The tilings of the matrix product (`linear.wgsl`): which block of C a workgroup computes and how, and how the
//! register-blocked kernels read their operands. The tuner (`gpu::tune`) chooses among them; `gpu::shaders`
//! turns a tiling into a kernel.

/// The tilings of the matrix product. The staged ones (`Small`, `Big`, `Huge`) hold tiles of op(A) and op(B) in
/// workgroup memory and are `linear.wgsl` compiled once each with their two constants; the register-blocked ones
/// (`Reg`, kernel `matmul_reg`) read both straight from the storage buffers. Every tiling sums each output's
/// products one fma at a time in the order of K, so all give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    /// 32×32 a workgroup, a 2×2 block of neighbours a thread, K step 16 (`matmul_small`): more, smaller
    /// workgroups, for small products.
    Small,
    /// 64×64 a workgroup, 4×4 a thread in registers, K step 16.
    Big,
    /// 128×128 a workgroup, 8×8 a thread in registers, K step 8: twice the arithmetic per value read from
    /// workgroup memory of `Big`, for devices with registers to spare (64 accumulators a thread).
    Huge,
    /// 16×4 a thread in registers, K step 4, no workgroup memory and no barrier: 64 threads a workgroup, in
    /// one of three shapes. On adapters that run invocations as the SIMD lanes of a CPU (lavapipe) every memory
    /// access costs tens of fmas and both sides of every branch run; there it is several times faster.
    Reg(RegShape),
}

impl Tile {
    pub const ALL: [Tile; 6] = [
        Tile::Small,
        Tile::Big,
        Tile::Huge,
        Tile::Reg(RegShape::Wide),
        Tile::Reg(RegShape::Square),
        Tile::Reg(RegShape::Tall),
    ];

    /// Rows and columns of C one workgroup computes.
    pub fn block(self) -> (usize, usize) {
        match self {
            Tile::Reg(shape) => shape.block(),
            staged => {
                let side = staged.size();
                (side, side)
            }
        }
    }

    /// The side of a staged tiling's square block (`TILE` in `linear.wgsl`; 64 for the register-blocked
    /// ones, which are compiled from the 64×64 tiling's module and use none of its constants).
    pub fn size(self) -> usize {
        match self {
            Tile::Small => 32,
            Tile::Big | Tile::Reg(_) => 64,
            Tile::Huge => 128,
        }
    }

    /// The step along K of a staged tiling's tiles (`TK` in `linear.wgsl`; as `size`, the 64×64 tiling's
    /// for the register-blocked ones).
    pub fn k_step(self) -> usize {
        match self {
            Tile::Small | Tile::Big | Tile::Reg(_) => 16,
            Tile::Huge => 8,
        }
    }

    /// Whether its loads of op(A) and op(B) may be vectors (all but `matmul_small`'s).
    pub fn vector_loads(self) -> bool {
        self != Tile::Small
    }

    /// Its name in `BACKPROP_MATMUL_TILE`.
    pub fn name(self) -> &'static str {
        match self {
            Tile::Small => "small",
            Tile::Big => "big",
            Tile::Huge => "huge",
            Tile::Reg(RegShape::Wide) => "reg16x256",
            Tile::Reg(RegShape::Square) => "reg64x64",
            Tile::Reg(RegShape::Tall) => "reg256x16",
        }
    }

    /// Whether a product with an (m, n) output is worth timing with this tiling: a larger staged tile must fit
    /// inside the output, or most of each of its workgroups of 256 would be idle; the 32×32 one and the
    /// register-blocked ones (workgroups of 64) always are (on lavapipe the 64×64 one ran a 64×1×64 product
    /// in half the time of the 32×32 one).
    pub fn fits(self, m: usize, n: usize) -> bool {
        let (rows, cols) = self.block();
        matches!(self, Tile::Small | Tile::Reg(_)) || (m >= rows && n >= cols)
    }
}

/// The workgroup shapes of the register-blocked tilings: 64 threads, `width()` of them along N, each a 16×4
/// block of C. The wide one is for outputs of 256 columns or more; on narrower ones most of its threads would
/// compute columns past C's edge, which are never kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegShape {
    /// 16 rows × 256 columns a workgroup.
    Wide,
    /// 64 × 64.
    Square,
    /// 256 × 16.
    Tall,
}

impl RegShape {
    pub const ALL: [RegShape; 3] = [RegShape::Wide, RegShape::Square, RegShape::Tall];

    /// Threads of a workgroup along N (`REG_WIDTH` in `linear.wgsl`).
    pub fn width(self) -> usize {
        match self {
            RegShape::Wide => 64,
            RegShape::Square => 16,
            RegShape::Tall => 4,
        }
    }

    /// Rows and columns of C one workgroup computes.
    pub fn block(self) -> (usize, usize) {
        (16 * (64 / self.width()), 4 * self.width())
    }

    /// Its position in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How `matmul_reg` reads an operand (`A_LOAD`, `B_LOAD` in `linear.wgsl`, with the same numbers as the
/// `LOAD_*` constants there): four consecutive values of a row where the columns are contiguous and the offset
/// and row stride are multiples of 4, four of a column in the transposed case, or value by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Load {
    Rows = 0,
    Columns = 1,
    Values = 2,
}

impl Load {
    pub const ALL: [Load; 3] = [Load::Rows, Load::Columns, Load::Values];

    /// How an operand with element (r, c) at `off + r·rs + c·cs` of its binding can be read.
    pub fn of(off: usize, rs: usize, cs: usize) -> Load {
        if off % 4 != 0 {
            Load::Values
        } else if cs == 1 && rs % 4 == 0 {
            Load::Rows
        } else if rs == 1 && cs % 4 == 0 {
            Load::Columns
        } else {
            Load::Values
        }
    }
}
