/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* dray web: the stylesheet and script, embedded so the dashboard works
 * air-gapped (no CDN). Served as /assets/dray.css and /assets/dray.js under
 * a Content-Security-Policy that allows only these (no inline script). */
#include "web.h"

const char web_css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}\n"
    "nav{background:#8b1a1a;padding:.5em 1em}nav a{color:#fff;margin-right:1.2em;"
    "text-decoration:none;font-weight:600}nav a.brand{font-size:1.2em}\n"
    "main{padding:1em 1.5em}h1{font-size:1.4em}table{border-collapse:collapse;width:100%;"
    "background:#fff;margin-bottom:1em}\n"
    "th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}"
    "th{background:#eee}\n"
    "td.args,pre{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}\n"
    "pre{background:#fff;border:1px solid #ddd;padding:.5em;max-height:30em;overflow:auto}\n"
    ".stats{display:flex;flex-wrap:wrap;gap:1em;margin-bottom:1em}.stat{background:#fff;"
    "border:1px solid #ddd;padding:.5em 1em;min-width:7em}\n"
    ".stat b{display:block;font-size:1.5em}button{cursor:pointer}form.inline{display:inline}\n"
    ".ro{color:#666;font-style:italic}.pager a{margin-right:1em}.flash{background:#ffd;"
    "border:1px solid #cc8;padding:.5em;margin-bottom:1em}\n"
    "canvas{background:#fff;border:1px solid #ddd}\n"
    "tr.paused td.state{color:#a60;font-weight:600}\n";

/* The live chart: polls /stats.json every 2 s and draws processed and failed
 * per interval. Confirmation for destructive buttons (data-confirm). */
const char web_js[] =
    "(function(){\n"
    "document.addEventListener('click',function(e){var t=e.target;"
    "if(t&&t.dataset&&t.dataset.confirm&&!window.confirm(t.dataset.confirm))e.preventDefault();});"
    "\n"
    "var all=document.getElementById('check-all');if(all)all.addEventListener('change',function(){"
    "document.querySelectorAll('input[name=jid]').forEach(function(c){c.checked=all.checked;});});"
    "\n"
    "var c=document.getElementById('chart');if(!c)return;var ctx=c.getContext('2d');"
    "var pts=[],last=null;\n"
    "function draw(){ctx.clearRect(0,0,c.width,c.height);var max=1;pts.forEach(function(p){"
    "max=Math.max(max,p[0],p[1]);});\n"
    "[['#2a7',0],['#c33',1]].forEach(function(s){ctx.strokeStyle=s[0];ctx.beginPath();"
    "pts.forEach(function(p,i){var x=i*c.width/60,y=c.height-5-(c.height-10)*p[s[1]]/max;"
    "if(i)ctx.lineTo(x,y);else ctx.moveTo(x,y);});ctx.stroke();});\n"
    "ctx.fillStyle='#222';ctx.fillText('max '+max+' / 2 s',5,12);}\n"
    "function poll(){fetch('stats.json',{credentials:'same-origin'}).then(function(r){"
    "return r.json();}).then(function(s){\n"
    "if(last)pts.push([s.processed-last.processed,s.failed-last.failed]);last=s;"
    "if(pts.length>60)pts.shift();\n"
    "['processed','failed','busy','enqueued','retries','scheduled','dead'].forEach(function(k){"
    "var el=document.getElementById('s-'+k);if(el)el.textContent=s[k];});draw();"
    "c.dataset.polls=(+(c.dataset.polls||0)+1);}).catch(function(){});}\n"
    "poll();setInterval(poll,2000);})();\n";
