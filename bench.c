#include "/work/main/modules/dsp/biquad.c"
#include "wave.c"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int N=14400000, B=atoi(argv[1]);
  float *L=malloc(4*N),*R=malloc(4*N),*oL=malloc(4*N),*oR=malloc(4*N),*pL=malloc(4*N),*pR=malloc(4*N);
  srand(1); for(int i=0;i<N;i++){L[i]=(rand()/(float)RAND_MAX-0.5f); R[i]=(rand()/(float)RAND_MAX-0.5f)*0.5f;}
  mb_biquad q[4]; mb_biquad_highpass(&q[0],48000,30,0.707); mb_biquad_lowshelf(&q[1],48000,100,0.707,1.5);
  mb_biquad_peak(&q[2],48000,300,1,-2); mb_biquad_highshelf(&q[3],48000,10000,0.707,2);
  const mb_biquad *c[4]={&q[0],&q[1],&q[2],&q[3]};
  for(int rep=0;rep<3;rep++){
  mb_biquad_state st[4], st2[4]; memset(st,0,sizeof st); memset(st2,0,sizeof st2);
  mb_biquad_state *sp[4]={&st[0],&st[1],&st[2],&st[3]}, *sp2[4]={&st2[0],&st2[1],&st2[2],&st2[3]};
  const float *in[2]={L,R}; float *o1[2]={oL,oR}, *o2[2]={pL,pR};
  double t0=now();
  for(int off=0;off<N;off+=B){int n=N-off<B?N-off:B; mb_biquad_cascade(c,sp,4,in,o1,2,off,n);}
  double t1=now();
  int B2 = argc>2?atoi(argv[2]):B;
  for(int off=0;off<N;off+=B2){int n=N-off<B2?N-off:B2; cascade_wave(c,sp2,4,in,o2,off,n);}
  double t2=now();
  long diff=0; double md=0; for(int i=0;i<N;i++){ if(oL[i]!=pL[i]||oR[i]!=pR[i]) diff++; double d=fabs(oL[i]-pL[i]); if(d>md)md=d;}
  printf("old %.2f ns/frame  wave %.2f ns/frame  diffs %ld maxdiff %g\n",(t1-t0)/N*1e9,(t2-t1)/N*1e9,diff,md);}
}
