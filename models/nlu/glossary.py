"""The assistant's own words in German, Arabic and Chinese, for code-switching.

The general dictionaries (:mod:`models.nlu.dictionaries`) rank senses without
knowing the domain: their first German "alarm" is "Alarm" (not "Wecker"), their
Arabic one "الفزع" (fright, not "منبه"), their Chinese one "警报" (a siren, not
"闹钟"), and "light" is "leicht" before "Licht". This glossary, written for
voicestream from the content words MASSIVE en-US **train** uses most (its
intents' vocabulary: alarms, reminders, lights, music, weather, lists, news,
mail, times of day), gives the domain senses; :func:`merged` uses them instead of
the dictionaries' for the words it has. Its words come from MASSIVE train, but
the need for it was seen in xSID **valid** errors (German "Wecker", Chinese
"闹钟" and Arabic "منبه" read as other intents), so xSID valid figures of a
model trained with it are optimistic; a held-out set has to confirm them.

One line per English word: ``english | German | Arabic | Chinese``, each a
comma-separated list, best first (an empty field: no entry). ``on`` is the particle
("turn on": an / شغل / 打开) and ``on (prep)`` the preposition ("on friday", "on
spotify": auf / على / 在); :func:`models.nlu.codeswitch.sense` tells them apart.
"""

from __future__ import annotations

_TABLE = """
alarm | wecker, alarm | منبه, المنبه | 闹钟
alarms | wecker, alarme | منبهات, المنبهات | 闹钟
wake | weck, wecken, aufwecken | أيقظ, أيقظني | 叫醒, 醒
reminder | erinnerung | تذكير, التذكير | 提醒
reminders | erinnerungen | تذكيرات, التذكيرات | 提醒
remind | erinner, erinnere | ذكرني, ذكر | 提醒
timer | timer, zeitschaltuhr | مؤقت, المؤقت | 计时器, 定时器
set | stelle, stell, einstellen | اضبط, ضبط | 设置, 设定, 定
cancel | lösche, abbrechen, storniere | ألغ, إلغاء, ألغي | 取消
delete | lösche, löschen, entferne | احذف, حذف, امسح | 删除, 删掉
remove | entferne, lösche | أزل, احذف, إزالة | 删除, 去掉, 移除
show | zeige, zeig, anzeigen | أظهر, اعرض, أرني | 显示, 给我看, 展示
list | liste | قائمة, القائمة | 列表, 清单
lists | listen | قوائم, القوائم | 列表, 清单
add | füge, hinzufügen | أضف, إضافة | 添加, 加
create | erstelle, erstellen | أنشئ, إنشاء | 创建, 建立
change | ändere, ändern | غير, تغيير | 更改, 改变
turn | schalte, schalt, mach | شغل, أدر | 打开, 开
off | aus, ab | أطفئ, إيقاف | 关, 关掉
on | an, ein | شغل, تشغيل | 开, 打开
on (prep) | auf, am | على, في | 在
switch | schalte, schalter | بدل, شغل | 切换, 开关
up | hoch, rauf, heller | ارفع, أعلى | 调高, 调亮, 高
down | runter, niedriger, dunkler | اخفض, أقل | 调低, 调暗, 低
dim | dimme, dimmen, dunkler | خفت, اخفت | 调暗, 暗
brighter | heller | أكثر سطوعا, أقوى | 更亮, 亮一点
brightness | helligkeit | السطوع, الإضاءة | 亮度
increase | erhöhe, erhöhen | زد, ارفع | 增加, 调高
decrease | verringere, senke | قلل, اخفض | 减少, 调低
lower | senke, leiser, niedriger | اخفض, أخفض | 调低, 降低
dark | dunkel | مظلم, الظلام | 暗, 黑
light | licht, lampe | الضوء, ضوء, النور | 灯, 灯光
lights | lichter, licht, lampen | الأضواء, الأنوار | 灯, 灯光
lamp | lampe | المصباح, مصباح | 台灯, 灯
kitchen | küche | المطبخ, مطبخ | 厨房
bedroom | schlafzimmer | غرفة النوم | 卧室
room | zimmer, raum | الغرفة, غرفة | 房间
house | haus | المنزل, البيت | 房子, 家
home | zuhause, haus | المنزل, البيت | 家
play | spiel, spiele, abspielen | شغل, تشغيل | 播放, 放
music | musik | الموسيقى, موسيقى | 音乐
song | lied, song | أغنية, الأغنية | 歌, 歌曲
songs | lieder, songs | أغاني, الأغاني | 歌, 歌曲
playlist | playlist, wiedergabeliste | قائمة التشغيل | 播放列表, 歌单
album | album | الألبوم, ألبوم | 专辑
artist | künstler | الفنان, فنان | 艺术家, 歌手
radio | radio | الراديو, راديو | 电台, 收音机
podcast | podcast | البودكاست, بودكاست | 播客
volume | lautstärke | الصوت, مستوى الصوت | 音量
louder | lauter | أعلى | 大声点, 大一点
quiet | leise, ruhe | هادئ, اسكت | 安静
mute | stumm, stummschalten | كتم, اكتم | 静音
stop | stopp, halt, beende | أوقف, توقف | 停止, 停
pause | pause, pausiere | أوقف مؤقتا | 暂停
weather | wetter | الطقس, طقس | 天气
rain | regen, regnet | مطر, المطر, ستمطر | 雨, 下雨
raining | regnet | تمطر | 下雨
snow | schnee, schneit | ثلج, الثلج, ستثلج | 雪, 下雪
snowing | schneit | تثلج | 下雪
sunny | sonnig | مشمس | 晴, 晴天
hot | heiß, warm | حار, ساخن | 热
cold | kalt | بارد | 冷
temperature | temperatur | درجة الحرارة | 温度, 气温
forecast | vorhersage, wettervorhersage | توقعات, النشرة الجوية | 预报, 天气预报
umbrella | regenschirm, schirm | مظلة | 伞, 雨伞
jacket | jacke | سترة, جاكيت | 夹克, 外套
today | heute | اليوم | 今天
tomorrow | morgen | غدا, بكرة | 明天
yesterday | gestern | أمس, البارحة | 昨天
tonight | heute abend, heute nacht | الليلة | 今晚
morning | morgen, früh, vormittag | صباح, الصباح, صباحا | 早上, 上午
afternoon | nachmittag | بعد الظهر, عصر | 下午
evening | abend | مساء, المساء | 晚上
night | nacht | ليل, الليل, ليلة | 夜, 晚上
week | woche | أسبوع, الأسبوع | 周, 星期
weekend | wochenende | نهاية الأسبوع | 周末
day | tag | يوم, اليوم | 天, 日
time | zeit, uhrzeit, uhr | الوقت, وقت, الساعة | 时间, 点
hour | stunde | ساعة | 小时
hours | stunden | ساعات | 小时
minute | minute | دقيقة | 分钟
minutes | minuten | دقائق | 分钟
am | uhr morgens, morgens | صباحا | 上午
pm | uhr abends, nachmittags | مساء | 下午
every | jeden, alle | كل | 每
monday | montag | الاثنين | 星期一, 周一
tuesday | dienstag | الثلاثاء | 星期二, 周二
wednesday | mittwoch | الأربعاء | 星期三, 周三
thursday | donnerstag | الخميس | 星期四, 周四
friday | freitag | الجمعة | 星期五, 周五
saturday | samstag | السبت | 星期六, 周六
sunday | sonntag | الأحد | 星期天, 周日
calendar | kalender | التقويم, تقويم | 日历
meeting | besprechung, meeting, termin | اجتماع, الاجتماع | 会议, 开会
event | termin, veranstaltung | حدث, موعد | 活动, 事件
events | termine, veranstaltungen | الأحداث, المواعيد | 活动
appointment | termin | موعد, الموعد | 约会, 预约
birthday | geburtstag | عيد ميلاد | 生日
schedule | plan, zeitplan | جدول, الجدول | 日程, 安排
news | nachrichten, news | الأخبار, أخبار | 新闻
email | e-mail, mail | البريد الإلكتروني, بريد | 邮件, 电子邮件
emails | e-mails, mails | الرسائل, رسائل البريد | 邮件
send | sende, schicke, senden | أرسل, ارسال | 发送, 发
message | nachricht | رسالة, الرسالة | 消息, 信息
call | ruf, anrufen | اتصل, مكالمة | 打电话, 呼叫
contact | kontakt | جهة اتصال | 联系人
phone | telefon, handy | الهاتف, هاتف | 电话, 手机
tell | sag, sage, erzähl | أخبرني, قل | 告诉
what | was, welche, welcher | ما, ماذا | 什么
when | wann | متى | 什么时候
where | wo | أين | 哪里, 在哪
how | wie | كيف, كم | 怎么, 如何
many | viele | كم | 多少
all | alle | كل, جميع | 所有, 全部
next | nächste, nächsten | القادم, التالي | 下一个, 下个
new | neue, neu | جديد, جديدة | 新
find | finde, such | ابحث, جد | 找, 查找
search | suche | ابحث, بحث | 搜索
check | prüfe, überprüfe | تحقق, افحص | 查看, 检查
order | bestelle, bestellen | اطلب, طلب | 订, 点
food | essen | الطعام, طعام | 食物, 吃的
coffee | kaffee | القهوة, قهوة | 咖啡
recipe | rezept | وصفة | 食谱, 菜谱
cook | koche, kochen | اطبخ, طبخ | 做饭, 煮
train | zug | القطار, قطار | 火车
ticket | ticket, fahrkarte | تذكرة | 票
taxi | taxi | تاكسي, سيارة أجرة | 出租车
traffic | verkehr | المرور, حركة المرور | 交通
joke | witz | نكتة | 笑话
vacuum | staubsauger | المكنسة, مكنسة | 吸尘器
socket | steckdose | المقبس | 插座
plug | stecker, steckdose | القابس | 插头
clean | putze, reinige | نظف | 打扫, 清洁
currency | währung | العملة | 货币
stock | aktie, aktien | الأسهم, سهم | 股票
price | preis | السعر, سعر | 价格
definition | definition, bedeutung | تعريف | 定义
date | datum | التاريخ, تاريخ | 日期
please | bitte | من فضلك, لو سمحت | 请
need | brauche | أحتاج | 需要
want | will, möchte | أريد | 想, 要
me | mich, mir | لي, ني | 我
my | mein, meine, meinen | لي | 我的
"""


def glossary() -> dict[str, dict[str, list[str]]]:
    """``{lang: {english: [translations, best first]}}`` for de, ar and zh."""
    out: dict[str, dict[str, list[str]]] = {"de": {}, "ar": {}, "zh": {}}
    for line in _TABLE.strip().splitlines():
        english, *fields = (f.strip() for f in line.split("|"))
        for lang, field in zip(("de", "ar", "zh"), fields, strict=True):
            words = [w.strip() for w in field.split(",") if w.strip()]
            if words:
                out[lang][english] = words
    return out


def merged(tables: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    """``tables`` (from :func:`models.nlu.dictionaries.load`) with the glossary's
    translations instead of the dictionaries' for each word it has (code-switching
    draws among a word's translations evenly, so the dictionaries' other senses
    would keep most of the draws)."""
    out = {lang: dict(table) for lang, table in tables.items()}
    for lang, entries in glossary().items():
        if lang in out:
            out[lang].update(entries)
    return out
