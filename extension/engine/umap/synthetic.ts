// Seeded clustered vectors on the unit sphere, for UMAP tests, benchmarks and demos: clusters
// grouped in families (so the layout has structure at two scales), with isotropic noise whose
// norm is comparable to the distance between centres (so neighbourhoods inside a cluster are
// not trivial to keep).
import { gaussian } from '../random';

export interface ClusteredVectorsOptions {
  /** Default 20. */
  clusters?: number;
  /** Families of clusters sharing a direction. Default 5. */
  groups?: number;
  /** Expected norm of the noise added to a unit centre. Default 1. */
  noise?: number;
  /** How far a cluster centre strays from its family direction (before normalising). Default 0.8. */
  clusterSpread?: number;
  seed?: number;
}

export interface ClusteredVectors {
  /** n x d, L2-normalised rows. */
  vectors: Float32Array;
  /** Cluster of each row (rows cycle through the clusters). */
  labels: Int32Array;
}

function unit(v: Float64Array): Float64Array {
  let s = 0;
  for (const x of v) s += x * x;
  const inv = 1 / Math.sqrt(s);
  return v.map((x) => x * inv);
}

export function clusteredVectors(n: number, d: number, opts: ClusteredVectorsOptions = {}): ClusteredVectors {
  const clusters = opts.clusters ?? 20;
  const groups = opts.groups ?? 5;
  const noise = opts.noise ?? 1;
  const clusterSpread = opts.clusterSpread ?? 0.8;
  const g = gaussian(opts.seed ?? 1);
  const draw = () => Float64Array.from({ length: d }, () => g());
  const families = Array.from({ length: groups }, () => unit(draw()));
  const centres = Array.from({ length: clusters }, (_, c) => {
    const off = unit(draw());
    return unit(families[c % groups].map((x, t) => x + clusterSpread * off[t]));
  });
  const vectors = new Float32Array(n * d);
  const labels = new Int32Array(n);
  const perDim = noise / Math.sqrt(d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const c = i % clusters;
    labels[i] = c;
    let s = 0;
    for (let t = 0; t < d; t++) {
      row[t] = centres[c][t] + perDim * g();
      s += row[t] * row[t];
    }
    const inv = 1 / Math.sqrt(s);
    for (let t = 0; t < d; t++) vectors[i * d + t] = row[t] * inv;
  }
  return { vectors, labels };
}
